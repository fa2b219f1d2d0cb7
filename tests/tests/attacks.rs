//! Attack-simulation sessions across processes: a hub with its own broker and an enrolled
//! agent watching a device whose benign traffic it replays. A three-step session (SYN flood,
//! port scan under FGSM, SSH brute force) runs on the agent, its progress reaches the
//! session's WebSocket, every step gets its figures, and the HTML and PDF reports print the
//! database's numbers. A session is stopped mid-step, another loses its agent, and invalid
//! sessions are refused with the field named.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct Api {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.runtime.block_on(async {
            let mut r = self
                .http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    fn bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        self.runtime.block_on(async {
            let r = self
                .http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let kind = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (status, kind, r.bytes().await.expect("body").to_vec())
        })
    }

    fn session(&self, id: &str) -> Value {
        let (s, v) = self.send(reqwest::Method::GET, &format!("/attacks/sessions/{id}"), None);
        assert_eq!(s, 200, "{v}");
        v
    }

    fn create(&self, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, "/attacks/sessions", Some(body))
    }

    fn start(&self, id: &str) -> (u16, Value) {
        self.send(reqwest::Method::POST, &format!("/attacks/sessions/{id}/start"), None)
    }

    /// Waits (at most `limit`) until the session is no longer running; returns it as it is then.
    fn ended(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let last = self.session(id);
            if !matches!(last["status"].as_str(), Some("running" | "pending")) || Instant::now() > deadline {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A step at a low intensity: a flood still makes thousands of flows a second, each one a
/// window for the agent to score and the hub to store, on a 2-core machine running both.
fn step(attack: &str, variant: Option<&str>, secs: u32, eps: Option<f64>) -> Value {
    json!({
        "attack_type": attack,
        "variant": variant,
        "duration_seconds": secs,
        "intensity": 0.05,
        "adversarial_enabled": eps.is_some(),
        "adversarial_epsilon": eps,
    })
}

/// Reads a WebSocket until `done` says enough, for at most `limit`; returns what came.
fn collect(
    runtime: &tokio::runtime::Runtime,
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    runtime.block_on(async {
        while !done(&got) {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(msg))) => {
                    if let Ok(text) = msg.into_text() {
                        if let Ok(v) = serde_json::from_str::<Value>(&text) {
                            got.push(v);
                        }
                    }
                }
                _ => break,
            }
        }
    });
    got
}

#[test]
fn sessions_run_on_the_agent_report_progress_and_can_be_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_attacks"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port: free_port() },
        data: dir.path().join("hub-data"),
    };
    let hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();

    let target = "192.168.7.20";
    let pcap = capture(dir.path(), "benign", target);
    let name = unique("e2e-attack");
    let cfg = agent_config(dir.path(), &name, None, &pcap, "192.168.7.0/24", 1.0);
    hub.enroll(&cfg);
    let agent = start_agent(dir.path(), &name, &cfg);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = runtime.block_on(hub.admin_token());
    let api = Api {
        runtime,
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}/api/v1", hub.port),
        token: token.clone(),
    };
    wait_for("the device to be seen", Duration::from_secs(60), || {
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM devices WHERE host(ip_address) = '{target}'"),
        ) == 1
    });
    let device = statuses(
        &mut conn,
        &format!("SELECT id::text AS status FROM devices WHERE host(ip_address) = '{target}'"),
    )
    .pop()
    .expect("device");
    let agent_id = statuses(
        &mut conn,
        &format!("SELECT id::text AS status FROM agents WHERE name = '{name}'"),
    )
    .pop()
    .expect("agent");

    let status_path = format!("/devices/{device}/status");
    wait_for(
        "the device's agent to show as connected",
        Duration::from_secs(15),
        || api.send(reqwest::Method::GET, &status_path, None).1["agent_connected"] == true,
    );

    // Invalid sessions: 422 naming the field, nothing stored.
    let bad = [
        (
            json!({"device_id": device, "steps": [{"attack_type": "teleport"}]}),
            "steps",
        ),
        (
            json!({"device_id": device, "steps": [{"attack_type": "port_scan", "duration_seconds": 0}]}),
            "steps[0].duration_seconds",
        ),
        (
            json!({"device_id": device, "steps": [{"attack_type": "port_scan", "intensity": 1.5}]}),
            "steps[0].intensity",
        ),
        (
            json!({"device_id": device, "steps": [{"attack_type": "port_scan", "adversarial_epsilon": 0.1}]}),
            "steps[0].adversarial_epsilon",
        ),
        (
            json!({"device_id": device, "steps": vec![json!({"attack_type": "port_scan"}); 21]}),
            "steps",
        ),
        (
            json!({"device_id": device, "agent_id": uuid::Uuid::now_v7(), "steps": [{"attack_type": "port_scan"}]}),
            "agent_id",
        ),
    ];
    for (body, field) in bad {
        let (s, v) = api.create(body.clone());
        assert_eq!(s, 422, "{body} -> {v}");
        assert!(v.to_string().contains(field), "{body}: {field} not named in {v}");
    }
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM attack_sessions"), 0);

    // A block_ip rule that simulated attacks match: it may only ever log a dry run.
    let (s, rule) = api.send(
        reqwest::Method::POST,
        "/prevention/rules",
        Some(json!({"rule_name": "block attackers", "device_id": device, "threshold": 0.5, "action_type": "block_ip", "cooldown_seconds": 0})),
    );
    assert_eq!(s, 201, "{rule}");

    // The three-step session.
    let (s, created) = api.create(json!({
        "device_id": device,
        "agent_id": agent_id,
        "gap_seconds": 3,
        "steps": [
            step("ddos_flood", Some("syn_flood"), 12, None),
            step("port_scan", None, 12, Some(0.01)),
            step("brute_force_ssh", None, 12, None),
        ],
    }));
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("session id").to_string();
    let (mut ws, _) = api
        .runtime
        .block_on(tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{}/ws/attacks/{id}?token={token}",
            hub.port
        )))
        .expect("ws/attacks");
    let started = Instant::now();
    let (s, run) = api.start(&id);
    assert_eq!(s, 202, "{run}");
    assert_eq!(run["status"], "running", "{run}");
    let (s, again) = api.start(&id);
    assert_eq!(s, 409, "a running session does not start twice: {again}");

    let events = collect(&api.runtime, &mut ws, Duration::from_secs(36 + 6 + 10), |got| {
        got.iter()
            .any(|e| e["type"] == "attack_progress" && e["data"]["event"] == "session_ended")
    });
    let session = api.ended(&id, Duration::from_secs(5));
    let took = started.elapsed();
    assert_eq!(
        session["status"],
        "completed",
        "{session}\n{}\n{}",
        agent.log_text(),
        hub_proc.log_text()
    );
    assert!(
        took <= Duration::from_secs(36 + 6 + 10),
        "the session took {took:?}, more than its steps, gaps and 10 s"
    );
    assert_eq!(session["progress_pct"], 100.0, "{session}");
    let steps = session["steps"].as_array().expect("steps").clone();
    assert_eq!(steps.len(), 3);
    for st in &steps {
        assert_eq!(st["status"], "completed", "{st}");
        assert!(st["windows"].as_i64().unwrap_or(0) > 0, "every step has windows: {st}");
        assert!(
            st["detection_rate"].is_number() && st["avg_confidence"].is_number(),
            "{st}"
        );
        let progressed = events
            .iter()
            .any(|e| e["data"]["event"] == "step_ended" && e["data"]["step"] == st["step_order"]);
        assert!(
            progressed,
            "no progress of step {} on the WebSocket: {events:?}",
            st["step_order"]
        );
    }
    for clean in [&steps[0], &steps[2]] {
        assert_eq!(clean["detected"], true, "a clean step is detected: {clean}");
        assert!(clean["detection_latency_ms"].is_number(), "{clean}");
        assert!(clean["clean_detection_rate"].is_null(), "{clean}");
    }
    assert!(
        steps[1]["clean_detection_rate"].is_number(),
        "the FGSM step records the unperturbed rate too: {}",
        steps[1]
    );
    assert!(session["model_version"].is_string(), "{session}");

    // Simulated predictions are marked, raise no alert, and prevention only dry-runs.
    // Every window a step counted is stored as a marked prediction (the last may still be on
    // their way), besides those scored after a step's end that still hold its flows.
    let stored_windows: i64 = steps.iter().map(|s| s["windows"].as_i64().unwrap_or(0)).sum();
    let marked = format!("SELECT count(*) AS n FROM predictions WHERE attack_session_id = '{id}'");
    wait_for("the step windows' predictions", Duration::from_secs(30), || {
        count(&mut conn, &marked) >= stored_windows
    });
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM alerts a JOIN predictions p ON p.id = a.prediction_id \
                 WHERE p.attack_session_id = '{id}'"
            )
        ),
        0,
        "a test raises no alert"
    );
    let logged = statuses(
        &mut conn,
        &format!(
            "SELECT l.action_executed AS status FROM prevention_logs l JOIN predictions p ON p.id = l.prediction_id \
             WHERE p.attack_session_id = '{id}'"
        ),
    );
    assert!(!logged.is_empty(), "the block_ip rule fired on the simulated attack");
    assert!(logged.iter().all(|a| a == "dry_run:block_ip"), "{logged:?}");
    assert!(
        steps.iter().any(|s| s["auto_action_taken"] == "dry_run:block_ip"),
        "{steps:?}"
    );

    // Reports: the same figures as the rows.
    let (s, kind, html) = api.bytes(&format!("/attacks/sessions/{id}/report?format=html"));
    assert_eq!(s, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    let html = String::from_utf8(html).expect("utf-8");
    let (s, kind, pdf) = api.bytes(&format!("/attacks/sessions/{id}/report?format=pdf"));
    assert_eq!(s, 200);
    assert_eq!(kind, "application/pdf");
    let pdf_path = dir.path().join("report.pdf");
    std::fs::write(&pdf_path, &pdf).expect("write pdf");
    let text = std::process::Command::new("pdftotext")
        .args(["-layout"])
        .arg(&pdf_path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    let rate = |v: &Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.3}"));
    let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.0} ms"));
    for st in &steps {
        for (label, figure) in [
            ("detection rate", rate(&st["detection_rate"])),
            ("avg confidence", rate(&st["avg_confidence"])),
            ("detection latency", ms(&st["detection_latency_ms"])),
            ("windows", st["windows"].to_string()),
        ] {
            assert!(
                text.contains(&format!("{label} {figure}")),
                "PDF lacks {label} {figure}:\n{text}"
            );
            assert!(html.contains(&format!(">{figure}<")), "HTML lacks {label} {figure}");
        }
    }
    assert!(html.contains("<svg"), "the HTML has its chart");
    let (s, again) = api.start(&id);
    assert_eq!(s, 409, "a completed session does not start again: {again}");

    // Stop in the middle of a step: aborted within 1 s of the request.
    let (_, long) = api.create(json!({"device_id": device, "steps": [
        step("ddos_flood", Some("udp_flood"), 120, None),
        step("port_scan", None, 10, None),
    ]}));
    let long_id = long["id"].as_str().expect("id").to_string();
    let (s, _) = api.start(&long_id);
    assert_eq!(s, 202);
    wait_for("the first step to run", Duration::from_secs(30), || {
        api.session(&long_id)["steps"][0]["status"] == "running"
    });
    std::thread::sleep(Duration::from_secs(2));
    let stop_asked = chrono::Utc::now();
    let (s, stop) = api.send(
        reqwest::Method::POST,
        &format!("/attacks/sessions/{long_id}/stop"),
        None,
    );
    assert_eq!(s, 202, "{stop}");
    let stopped = api.ended(&long_id, Duration::from_secs(10));
    assert_eq!(stopped["status"], "aborted", "{stopped}");
    assert_eq!(stopped["steps"][0]["status"], "aborted", "{stopped}");
    assert_eq!(stopped["steps"][1]["status"], "skipped", "{stopped}");
    let ended_at: chrono::DateTime<chrono::Utc> = stopped["steps"][0]["completed_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("the aborted step's end");
    let abort_ms = (ended_at - stop_asked).num_milliseconds();
    assert!(
        abort_ms <= 1000,
        "the step ended {abort_ms} ms after the stop was asked"
    );
    let (s, _) = api.send(
        reqwest::Method::POST,
        &format!("/attacks/sessions/{long_id}/stop"),
        None,
    );
    assert_eq!(s, 409, "a session that is not running cannot be stopped");

    // An agent killed during a session: failed with a reason once the agent is offline.
    let (_, doomed) = api.create(json!({"device_id": device, "steps": [step("slow_rate", None, 120, None)]}));
    let doomed_id = doomed["id"].as_str().expect("id").to_string();
    let (s, _) = api.start(&doomed_id);
    assert_eq!(s, 202);
    wait_for("the step to run", Duration::from_secs(30), || {
        api.session(&doomed_id)["steps"][0]["status"] == "running"
    });
    agent.signal("-KILL");
    let failed = api.ended(&doomed_id, Duration::from_secs(30));
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["message"].as_str().is_some_and(|m| m.contains("agent")),
        "the reason is given: {failed}"
    );
    assert_eq!(failed["steps"][0]["status"], "failed", "{failed}");
    let (s, refused) = api.start(&doomed_id);
    assert_eq!(s, 409, "no online agent, no session: {refused}");
    let (_, live) = api.send(reqwest::Method::GET, &format!("/devices/{device}/status"), None);
    assert_eq!(live["agent_connected"], false, "{live}");
}
