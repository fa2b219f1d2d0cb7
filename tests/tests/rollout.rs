//! Model rollout across processes: an admin uploads and activates a new model at the hub; the
//! hub tells its enrolled agents over MQTT; each downloads the model over QUIC (mutual TLS,
//! checksummed), swaps it in without stopping, reports it, and its predictions carry it.
//! Then SIGHUP makes an agent re-read its configuration while it runs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use diesel::prelude::*;
use diesel::sql_types::Text;

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    model_version: Option<String>,
}

fn reported_model(conn: &mut PgConnection, agent: &str) -> Option<String> {
    diesel::sql_query(format!("SELECT model_version FROM agents WHERE name = '{agent}'"))
        .get_result::<Version>(conn)
        .ok()
        .and_then(|v| v.model_version)
}

fn multipart(boundary: &str, parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        let head = if ["model", "scaler", "metadata"].contains(name) {
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
        } else {
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
        };
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn a_new_model_reaches_every_agent_within_seconds_over_quic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_rollout"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port: free_port() },
        data: dir.path().join("hub-data"),
    };
    let _hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();

    let pcap = capture(dir.path(), "port_scan", "192.168.6.20");
    let names = [unique("e2e-roll-a"), unique("e2e-roll-b")];
    let mut agents = Vec::new();
    for name in &names {
        let cfg = agent_config(dir.path(), name, None, &pcap, "192.168.6.0/24", 1.0);
        hub.enroll(&cfg);
        agents.push(start_agent(dir.path(), name, &cfg));
    }
    let bundled = std::fs::read_to_string(repo().join("models/default/metadata.json")).expect("metadata");
    let bundled: serde_json::Value = serde_json::from_str(&bundled).expect("json");
    let bundled = bundled["model_version"].as_str().expect("version").to_string();
    for name in &names {
        wait_for("the agent's first status", Duration::from_secs(60), || {
            reported_model(&mut conn, name).as_deref() == Some(bundled.as_str())
        });
    }

    // An admin uploads a model under a new version and activates it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}/api/v1", hub.port);
    let token = runtime.block_on(hub.admin_token());
    let read = |f: &str| std::fs::read(repo().join("models/default").join(f)).expect("model file");
    let boundary = "gatewatch-e2e-7MA4YWxk";
    let body = multipart(
        boundary,
        &[
            ("model", read("model.onnx")),
            ("scaler", read("scaler.json")),
            ("metadata", read("metadata.json")),
            ("version", b"e2e-rollout-2".to_vec()),
            ("activate", b"true".to_vec()),
        ],
    );
    let activated = Instant::now();
    let (status, answer) = runtime.block_on(async {
        let r = http
            .post(format!("{base}/settings/model/upload"))
            .bearer_auth(&token)
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .expect("upload");
        (r.status(), r.text().await.unwrap_or_default())
    });
    assert!(status.is_success(), "{status} {answer}");

    for name in &names {
        wait_for("the agent to report the new model", Duration::from_secs(10), || {
            reported_model(&mut conn, name).as_deref() == Some("e2e-rollout-2")
        });
    }
    println!(
        "every agent reported the new model {:?} after activation",
        activated.elapsed()
    );
    for name in &names {
        let with_new = format!(
            "SELECT count(*) AS n FROM predictions p JOIN devices d ON d.id = p.device_id \
             JOIN agents a ON a.id = d.agent_id WHERE a.name = '{name}' AND p.model_version = 'e2e-rollout-2'"
        );
        wait_for("predictions made with the new model", Duration::from_secs(30), || {
            count(&mut conn, &with_new) > 0
        });
        let files = dir.path().join(name).join("models/e2e-rollout-2");
        assert!(
            files.join("model.onnx").is_file(),
            "downloaded into the state directory"
        );
    }

    // SIGHUP: the first agent re-reads its configuration; with no monitored network left among
    // its traffic it stops making predictions, without restarting.
    let cfg = dir.path().join(format!("{}.toml", names[0]));
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, text.replace("192.168.6.0/24", "10.99.0.0/16")).expect("rewrite config");
    agents[0].signal("-HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        agents[0].log_text().contains("monitored devices reloaded")
    });
    // Counted at the agent (the hub may still be storing what was scored before).
    let scored_now = || {
        sample(
            &http_get(metrics_port(&cfg), "/metrics"),
            "gatewatch_agent_windows_scored_total",
        )
    };
    std::thread::sleep(Duration::from_secs(2));
    let settled = scored_now();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(scored_now(), settled, "no windows for devices no longer monitored");

    // The agents stop cleanly; nothing they scored is missing or doubled across the swap.
    for (name, agent) in names.iter().zip(agents.iter_mut()) {
        agent.signal("-TERM");
        let log = agent.wait(Duration::from_secs(60));
        let (total, distinct) = agent_predictions(&mut conn, name);
        assert_eq!((total, distinct), (scored(&log), scored(&log)), "{log}");
    }
}
