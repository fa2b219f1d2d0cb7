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
    assert!(states.contains("training"), "status went through training: {states:?}");

    // Two completed rounds, each with a new model and every client recorded.
    let rounds = get("/fl/rounds");
    let items = rounds["items"].as_array().unwrap_or_else(|| panic!("{rounds}"));
    let completed: Vec<&serde_json::Value> = items.iter().filter(|r| r["status"] == "completed").collect();
    assert_eq!(completed.len(), 2, "{rounds}");
    for r in &completed {
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
        a.signal("-TERM");
        a.wait(Duration::from_secs(60));
    }
}
