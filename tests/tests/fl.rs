//! Federated learning across processes: a hub and three enrolled agents replaying benign
//! traffic of their own networks. Each agent fills its local training set from its own
//! windows; an admin starts a run; the agents make a collective CKKS key as the committee,
//! train on their local sets plus attacks they simulate for their own devices (a different
//! family mix at each), upload encrypted updates over QUIC, and two of them decrypt only the
//! sum. The rounds are recorded, new model versions are stored and the better one is
//! activated and rolled out. Nothing the hub stored or logged holds a member's key share.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};

#[derive(QueryableByName)]
struct RunRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    message: Option<String>,
}

fn run_state(conn: &mut PgConnection) -> Option<(String, Option<String>)> {
    diesel::sql_query("SELECT status, message FROM fl_runs ORDER BY started_at DESC LIMIT 1")
        .get_result::<RunRow>(conn)
        .ok()
        .map(|r| (r.status, r.message))
}

/// Appends an `[fl]` section to an agent's configuration.
fn with_fl(config: &Path, families: &str) {
    let mut text = std::fs::read_to_string(config).expect("config");
    text.push_str(&format!(
        "[fl]\nbenign_max_score = 0.3\nquiet_secs = 1\nsynth_families = [{families}]\nsynth_windows = 60\nmax_windows = 1500\n"
    ));
    std::fs::write(config, text).expect("write config");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn agents_train_together_and_the_hub_never_holds_a_key_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_fl"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port: free_port() },
        data: dir.path().join("hub-data"),
    };
    let hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();

    let mixes = [
        "\"scan\", \"dos_ddos\"",
        "\"brute_force\", \"web_attack\"",
        "\"exfiltration\", \"botnet_c2\", \"slow_rate\"",
    ];
    let mut agents = Vec::new();
    let mut configs = Vec::new();
    for (i, mix) in mixes.iter().enumerate() {
        let name = unique(&format!("e2e-fl-{i}"));
        let target = format!("192.168.{}.20", 21 + i);
        let pcap = capture(dir.path(), "benign", &target);
        let cfg = agent_config(dir.path(), &name, None, &pcap, &format!("192.168.{}.0/24", 21 + i), 1.0);
        with_fl(&cfg, mix);
        hub.enroll(&cfg);
        agents.push(start_agent(dir.path(), &name, &cfg));
        configs.push(cfg);
    }
    // Each local set fills with benign pseudo-labels of the agent's own devices.
    for cfg in &configs {
        wait_for(
            "benign windows in the local training set",
            Duration::from_secs(120),
            || {
                let m = http_get(metrics_port(cfg), "/metrics");
                sample(&m, "gatewatch_agent_fl_local_windows{family=\"benign\"}") >= 30.0
            },
        );
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}/api/v1", hub.port);
    let token = runtime.block_on(hub.admin_token());
    let post = |path: &str, body: serde_json::Value| {
        runtime.block_on(async {
            let r = http
                .post(format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("request");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        })
    };
    let get = |path: &str| {
        runtime.block_on(async {
            http.get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("request")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        })
    };

    // The agents report their local sets' composition (counts only) in their status.
    wait_for(
        "every agent's local-set composition at the hub",
        Duration::from_secs(30),
        || {
            let agents = get("/agents");
            let done = agents.as_array().is_some_and(|a| {
                a.len() == 3
                    && a.iter()
                        .all(|x| x["fl_local_windows"]["benign"].as_u64().unwrap_or(0) > 0)
            });
            if !done {
                // The API's per-user rate limit counts these.
                std::thread::sleep(Duration::from_millis(1500));
            }
            done
        },
    );

    // Bad parameters are refused with the field named.
    let (status, body) = post("/fl/start", serde_json::json!({"num_rounds": 2, "min_clients": 1}));
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("min_clients"), "{body}");

    let (status, body) = post(
        "/fl/start",
        serde_json::json!({
            "num_rounds": 2, "min_clients": 2, "local_epochs": 2, "deadline_secs": 120,
            "committee_size": 3, "threshold": 2, "activate": "if_better", "learning_rate": 0.001
        }),
    );
    assert_eq!(status, 202, "{body}");
    let (again, _) = post("/fl/start", serde_json::json!({"num_rounds": 1}));
    assert_eq!(again, 409, "one run at a time");
    let mut states = std::collections::BTreeSet::new();
    let mut polls = 0;
    wait_for("the run to end", Duration::from_secs(600), || {
        // Every 2 s: the API's per-user rate limit counts these too.
        polls += 1;
        if polls % 10 == 1 {
            let s = get("/fl/status");
            if let Some(state) = s["state"].as_str() {
                states.insert(state.to_string());
            }
        }
        run_state(&mut conn).is_some_and(|(s, _)| s != "keygen" && s != "training")
    });
    let (status, message) = run_state(&mut conn).expect("run");
    assert_eq!(status, "completed", "{message:?}\n{}", hub_proc.log_text());
    // The status followed the run; a short training phase may fall between two samples (the
    // clients' recorded metrics below show the training).
    assert!(
        states.iter().any(|s| s != "idle"),
        "the status showed the run: {states:?}"
    );

    // Two completed rounds, each with a new model and every client recorded.
    let rounds = get("/fl/rounds");
    let items = rounds["items"].as_array().unwrap_or_else(|| panic!("{rounds}"));
    let completed: Vec<&serde_json::Value> = items.iter().filter(|r| r["status"] == "completed").collect();
    assert_eq!(completed.len(), 2, "{rounds}");
    for r in &completed {
        println!(
            "round {}: model {}, F1 on the clients' validation windows {:.3} -> {:.3}, {} bytes, {:.1} s, activated {}",
            r["run_round"],
            r["model_version"],
            r["f1_before"].as_f64().unwrap_or(f64::NAN),
            r["global_f1"].as_f64().unwrap_or(f64::NAN),
            r["bytes_received"],
            r["duration_seconds"].as_f64().unwrap_or(0.0),
            r["activated"]
        );
        assert_eq!(r["clients_uploaded"], 3, "{r}");
        assert!(r["bytes_received"].as_i64().unwrap_or(0) > 0, "{r}");
        let version = r["model_version"].as_str().expect("version");
        assert!(hub.data.join("models").join(version).join("model.onnx").is_file());
        let detail = get(&format!("/fl/rounds/{}", r["round_number"]));
        let clients = detail["clients"].as_array().unwrap_or_else(|| panic!("{detail}"));
        assert_eq!(clients.len(), 3, "{detail}");
        for c in clients {
            assert_eq!(c["status"], "completed", "{c}");
            assert!(c["num_samples"].as_i64().unwrap_or(0) > 0, "{c}");
            assert!(c["f1_after"].is_number(), "{c}");
        }
    }
    let hub_metrics = runtime.block_on(async {
        http.get(format!("http://127.0.0.1:{}/metrics", hub.port))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    });
    assert!(sample(&hub_metrics, "gatewatch_hub_fl_updates_accepted_total") >= 6.0);

    // Privacy: the committee members' key shares (which the test reads from their state
    // directories) appear nowhere in what the hub stored or logged.
    let mut secrets = Vec::new();
    for cfg in &configs {
        let state = std::fs::read_to_string(cfg)
            .expect("config")
            .lines()
            .find_map(|l| {
                l.strip_prefix("state_dir = \"")
                    .map(|s| s.trim_end_matches('"').to_string())
            })
            .expect("state_dir");
        for f in files(&Path::new(&state).join("fl")) {
            if f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("member-"))
            {
                let bytes = std::fs::read(&f).expect("member file");
                // A stretch from the middle of the share (past the header).
                let mid = bytes.len() / 2;
                secrets.push(bytes[mid..mid + 48].to_vec());
            }
        }
    }
    assert_eq!(secrets.len(), 3, "every member keeps its share");
    let mut haystacks: Vec<Vec<u8>> = files(&hub.data).iter().filter_map(|f| std::fs::read(f).ok()).collect();
    haystacks.push(hub_proc.log_text().into_bytes());
    let dump = std::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", &hub.db])
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    haystacks.push(dump.stdout);
    for secret in &secrets {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        for h in &haystacks {
            assert!(
                !h.windows(secret.len()).any(|w| w == secret.as_slice()),
                "a key share is at the hub"
            );
            assert!(
                !h.windows(hex.len()).any(|w| w == hex.as_bytes()),
                "a key share (hex) is at the hub"
            );
        }
    }

    for a in agents.iter_mut() {
        println!(
            "agent peak resident memory after the run: {:.1} MB",
            a.peak_rss() as f64 / 1e6
        );
        a.signal("-TERM");
        a.wait(Duration::from_secs(60));
    }
}

/// The agents' names by id, from the hub's database.
fn agent_names(conn: &mut PgConnection) -> std::collections::BTreeMap<String, String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        name: String,
    }
    diesel::sql_query("SELECT id::text AS id, name FROM agents")
        .load::<Row>(conn)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect()
}

#[derive(QueryableByName)]
struct RoundRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    run_round: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    clients_uploaded: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    clients_dropped: i32,
}

fn round_rows(conn: &mut PgConnection) -> Vec<RoundRow> {
    diesel::sql_query(
        "SELECT run_round, status, reason, clients_uploaded, clients_dropped FROM fl_rounds ORDER BY run_round",
    )
    .load::<RoundRow>(conn)
    .unwrap_or_default()
}

#[test]
fn rounds_survive_a_killed_client_and_member_and_fail_cleanly_below_the_threshold() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_fl_drop"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port: free_port() },
        data: dir.path().join("hub-data"),
    };
    let hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();
    let mut agents = Vec::new();
    for i in 0..4 {
        let name = unique(&format!("e2e-fld-{i}"));
        let target = format!("192.168.{}.20", 31 + i);
        let pcap = capture(dir.path(), "benign", &target);
        let cfg = agent_config(dir.path(), &name, None, &pcap, &format!("192.168.{}.0/24", 31 + i), 1.0);
        with_fl(&cfg, "\"scan\", \"brute_force\"");
        hub.enroll(&cfg);
        let proc = start_agent(dir.path(), &name, &cfg);
        agents.push((name, cfg, Some(proc)));
    }
    for (_, cfg, _) in &agents {
        wait_for(
            "benign windows in the local training set",
            Duration::from_secs(120),
            || {
                let m = http_get(metrics_port(cfg), "/metrics");
                sample(&m, "gatewatch_agent_fl_local_windows{family=\"benign\"}") >= 30.0
            },
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = runtime.block_on(hub.admin_token());
    let (mut ws, _) = runtime
        .block_on(tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{}/ws/fl?token={token}",
            hub.port
        )))
        .expect("ws/fl");
    let started = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/fl/start", hub.port))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "num_rounds": 3, "min_clients": 2, "local_epochs": 1, "deadline_secs": 25,
                "committee_size": 3, "threshold": 2, "max_failed_rounds": 3
            }))
            .send()
            .await
            .expect("start")
            .status()
    });
    assert_eq!(started.as_u16(), 202);

    // The moment round 1 is sent to the clients, one committee member (also a client) dies.
    let training = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(msg))) => {
                    let Ok(text) = msg.into_text() else { continue };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                        continue;
                    };
                    if v["type"] == "fl.status" && v["data"]["state"] == "training" && v["data"]["round"] == 1 {
                        return Some(v["data"].clone());
                    }
                }
                _ => return None,
            }
        }
    });
    let status = training.unwrap_or_else(|| panic!("round 1 never started\n{}", hub_proc.log_text()));
    let names = agent_names(&mut conn);
    let members: Vec<String> = status["committee"]
        .as_array()
        .expect("committee")
        .iter()
        .filter_map(|m| m["agent_id"].as_str().and_then(|id| names.get(id)).cloned())
        .collect();
    assert_eq!(members.len(), 3, "{status}");
    let kill = |agents: &mut Vec<(String, std::path::PathBuf, Option<Proc>)>, name: &str| {
        let slot = agents.iter_mut().find(|(n, _, _)| n == name).expect("agent");
        if let Some(p) = slot.2.take() {
            p.signal("-KILL");
            drop(p);
        }
    };
    kill(&mut agents, &members[0]);

    wait_for("round 1 to end", Duration::from_secs(120), || {
        !round_rows(&mut conn).is_empty()
    });
    let rows = round_rows(&mut conn);
    assert_eq!(
        rows[0].status,
        "completed",
        "{:?}\n{}",
        rows[0].reason,
        hub_proc.log_text()
    );
    assert_eq!((rows[0].clients_uploaded, rows[0].clients_dropped), (3, 1));

    // A second member dies: one member left, below the threshold. The round fails and says why.
    kill(&mut agents, &members[1]);
    wait_for("round 2 to end", Duration::from_secs(120), || {
        round_rows(&mut conn).len() >= 2
    });
    let rows = round_rows(&mut conn);
    assert_eq!(rows[1].status, "failed");
    let reason = rows[1].reason.clone().unwrap_or_default();
    assert!(reason.contains("threshold"), "{reason}");

    // Both come back with their key shares from their state directories: the run goes on.
    for name in &members[..2] {
        let slot = agents.iter_mut().find(|(n, _, _)| n == name).expect("agent");
        slot.2 = Some(start_agent(dir.path(), name, &slot.1));
    }
    wait_for("the run to end", Duration::from_secs(240), || {
        run_state(&mut conn).is_some_and(|(s, _)| s != "keygen" && s != "training")
    });
    let rows = round_rows(&mut conn);
    let (status, message) = run_state(&mut conn).expect("run");
    let reasons: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} {:?}", r.run_round, r.status, r.reason))
        .collect();
    assert_eq!(status, "completed", "{message:?}");
    assert_eq!(
        rows.last().map(|r| (r.run_round, r.status.as_str())),
        Some((3, "completed")),
        "{message:?} {reasons:?}\n{}",
        agents
            .iter()
            .filter_map(|(_, _, p)| p.as_ref())
            .map(|p| p
                .log_text()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("FL") || l.contains("decrypt"))
                .collect::<Vec<_>>()
                .join("\n"))
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    for (_, _, p) in agents.iter_mut() {
        if let Some(p) = p.as_mut() {
            p.signal("-TERM");
            p.wait(Duration::from_secs(60));
        }
    }
}
