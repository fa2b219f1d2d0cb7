//! Operators' commands across processes: a hub with its own broker and an enrolled agent
//! replaying a capture. Stopping a device at the hub stops its windows at the agent (its
//! neighbours go on), starting it brings them back, and a capture uploaded at the hub for a
//! device outside the agent's networks is fetched over QUIC, replayed through the agent's
//! pipeline and ends up as that device's predictions and traffic log.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

struct Api {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let mut r = self
                .http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(b) = body {
                r = r.header("Content-Type", "application/octet-stream").body(b);
            }
            let r = r.send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            )
        })
    }

    /// Waits for a command to end; returns its result text.
    fn finished(&self, command: &serde_json::Value) -> String {
        let id = command["id"].as_str().expect("command id").to_string();
        let mut last = serde_json::Value::Null;
        wait_for("the agent to answer the command", Duration::from_secs(90), || {
            last = self.call(reqwest::Method::GET, &format!("/commands/{id}"), None).1;
            matches!(last["status"].as_str(), Some("done" | "failed"))
        });
        assert_eq!(last["status"], "done", "{last}");
        last["result"].as_str().unwrap_or_default().to_string()
    }
}

fn device_id(conn: &mut diesel::PgConnection, ip: &str) -> String {
    statuses(
        conn,
        &format!("SELECT id::text AS status FROM devices WHERE host(ip_address) = '{ip}'"),
    )
    .pop()
    .unwrap_or_else(|| panic!("no device {ip}"))
}

fn predictions_after(conn: &mut diesel::PgConnection, ip: &str, after: chrono::DateTime<chrono::Utc>) -> i64 {
    count(
        conn,
        &format!(
            "SELECT count(*) AS n FROM predictions p JOIN devices d ON d.id = p.device_id \
             WHERE host(d.ip_address) = '{ip}' AND p.ts > '{}'",
            after.to_rfc3339()
        ),
    )
}

#[test]
fn operators_start_stop_and_replay_through_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_commands"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port: free_port() },
        data: dir.path().join("hub-data"),
    };
    let _hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();

    // A light load (a few windows a second): what the hub has stored keeps up with the agent.
    let pcap = capture(dir.path(), "brute_force_ssh", "192.168.7.20");
    let name = unique("e2e-cmd");
    let cfg = agent_config(dir.path(), &name, None, &pcap, "192.168.7.0/24", 1.0);
    hub.enroll(&cfg);
    let mut agent = start_agent(dir.path(), &name, &cfg);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = runtime.block_on(hub.admin_token());
    let api = Api {
        runtime,
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{}/api/v1", hub.port),
        token,
    };
    let target = "192.168.7.20";
    let epoch = chrono::Utc::now() - chrono::Duration::hours(1);
    wait_for("predictions of the target", Duration::from_secs(60), || {
        predictions_after(&mut conn, target, epoch) > 0
    });
    let target_id = device_id(&mut conn, target);

    // Stop: once the agent says so, no window of the target ends after that moment.
    let (s, stop) = api.call(reqwest::Method::POST, &format!("/devices/{target_id}/stop"), None);
    assert_eq!(s, 202, "{stop}");
    let result = api.finished(&stop);
    let stopped_at = chrono::Utc::now();
    assert_eq!(result, format!("stopped monitoring {target}"));
    // The capture's other devices (the scanner is one) go on being scored meanwhile.
    let others_after = format!(
        "SELECT count(*) AS n FROM predictions p JOIN devices d ON d.id = p.device_id \
         WHERE host(d.ip_address) <> '{target}' AND p.ts > '{}'",
        stopped_at.to_rfc3339()
    );
    wait_for("the other devices' windows to go on", Duration::from_secs(30), || {
        count(&mut conn, &others_after) > 0
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        predictions_after(&mut conn, target, stopped_at),
        0,
        "the stopped device is not scored"
    );

    // Start: its windows come back.
    let (s, start) = api.call(reqwest::Method::POST, &format!("/devices/{target_id}/start"), None);
    assert_eq!(s, 202, "{start}");
    api.finished(&start);
    let started_at = chrono::Utc::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while predictions_after(&mut conn, target, started_at) == 0 {
        if std::time::Instant::now() > deadline {
            let latest = statuses(
                &mut conn,
                "SELECT host(d.ip_address) || ' ' || max(p.ts)::text || ' ' || count(*) AS status \
                 FROM predictions p JOIN devices d ON d.id = p.device_id GROUP BY d.ip_address",
            );
            panic!(
                "no window of the started device after {started_at}; latest per device: {latest:?}\n{}",
                agent.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Replay: a device outside the agent's networks, assigned to it at the hub.
    let outsider = "10.77.0.20";
    let agent_id = statuses(
        &mut conn,
        &format!("SELECT id::text AS status FROM agents WHERE name = '{name}'"),
    )
    .pop()
    .expect("agent row");
    let (s, created) = api.runtime.block_on(async {
        let r = api
            .http
            .post(format!("{}/devices", api.base))
            .bearer_auth(&api.token)
            .json(&serde_json::json!({
                "name": "replayed-cam", "device_type": "camera", "ip_address": outsider,
                "protocol": "http", "port": 80, "agent_id": agent_id
            }))
            .send()
            .await
            .expect("create device");
        (r.status().as_u16(), r.json::<serde_json::Value>().await.expect("json"))
    });
    assert_eq!(s, 201, "{created}");
    let outsider_id = created["id"].as_str().expect("id").to_string();
    let replay_pcap = dir.path().join("replay.pcap");
    let made = Command::new(bin("gatewatch-agent"))
        .args([
            "simulate",
            "--attack",
            "brute_force_ssh",
            "--duration",
            "8s",
            "--seed",
            "9",
        ])
        .args(["--target", outsider, "--pcap"])
        .arg(&replay_pcap)
        .output()
        .expect("simulate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let bytes = std::fs::read(&replay_pcap).expect("capture");
    let (s, replay) = api.call(
        reqwest::Method::POST,
        &format!("/traffic/upload-pcap?device_id={outsider_id}"),
        Some(bytes.clone()),
    );
    assert_eq!(s, 202, "{replay}");
    assert_eq!(replay["payload"]["bytes"].as_u64(), Some(bytes.len() as u64));
    let result = api.finished(&replay);
    println!("replay: {result}");
    assert!(result.starts_with("replayed "), "{result}");
    assert!(
        !result.contains(" 0 to or from"),
        "the capture has the device's flows: {result}"
    );
    wait_for("predictions of the replayed device", Duration::from_secs(30), || {
        predictions_after(&mut conn, outsider, epoch) > 0
    });
    let replayed_flows = format!(
        "SELECT count(*) AS n FROM traffic_logs t JOIN devices d ON d.id = t.device_id \
         WHERE host(d.ip_address) = '{outsider}' AND t.source_type = 'pcap'"
    );
    wait_for("the replayed flows in the traffic log", Duration::from_secs(30), || {
        count(&mut conn, &replayed_flows) > 0
    });
    let upload = replay["payload"]["upload_id"].as_str().expect("upload id");
    assert!(
        !hub.data.join("uploads").join(format!("{upload}.pcap")).exists(),
        "the hub drops a capture once it is replayed"
    );
    let kept = std::fs::read_to_string(dir.path().join(&name).join("monitoring.json")).expect("kept choices");
    assert!(kept.contains(outsider) && kept.contains(target), "{kept}");

    agent.signal("-TERM");
    let log = agent.wait(Duration::from_secs(60));
    let (total, distinct) = agent_predictions(&mut conn, &name);
    assert_eq!((total, distinct), (scored(&log), scored(&log)), "{log}");
}
