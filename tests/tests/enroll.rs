//! Identity on the fleet link: a hub with its own broker, agents enrolled with one-time tokens
//! from the hub's CLI, predictions over MQTT with mutual TLS. Then what must be refused: a
//! spent token, a hub CA that does not match the fingerprint, a forged certificate (MQTT and
//! QUIC), an agent publishing as another, and a revoked agent (new and live connections, MQTT
//! and QUIC).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gatewatch_agent::uplink::bulk::{BulkClient, BulkError};
use gatewatch_agent::uplink::identity::Identity;
use gatewatch_proto::fleet::{self, Channel};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use uuid::Uuid;

fn token(hub: &Hub) -> (String, String) {
    let out = hub.cli(&[
        "agents",
        "token",
        "--ttl-minutes",
        "10",
        "--hub-url",
        "http://127.0.0.1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let after = |heading: &str| {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(heading));
        lines.nth(1).map(|l| l.trim().to_string()).unwrap_or_default()
    };
    let (token, fingerprint) = (after("Enrollment token"), after("CA fingerprint"));
    assert_eq!((token.len(), fingerprint.len()), (64, 64), "{text}");
    (token, fingerprint)
}

fn enroll(hub: &Hub, config: &std::path::Path, token: &str, fingerprint: &str) -> std::process::Output {
    Command::new(bin("gatewatch-agent"))
        .args([
            "enroll",
            "--hub",
            &format!("http://127.0.0.1:{}", hub.port),
            "--token",
            token,
        ])
        .args(["--ca-sha256", fingerprint, "--config"])
        .arg(config)
        .output()
        .expect("gatewatch-agent enroll")
}

/// An MQTT session to the hub's TLS port with the given identity files and client id.
fn session(identity: &Identity, client_id: &str, port: u16) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let tls = identity.tls_config().expect("tls config");
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
    AsyncClient::new(options, 16)
}

/// Polls until the broker accepts the session (`Ok`) or the connection fails (`Err`).
async fn connected(eventloop: &mut EventLoop) -> Result<(), String> {
    let attempt = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer in 10 s".into()))
}

/// Polls until the connection breaks; how long that took, if within `limit`.
async fn closed_within(eventloop: &mut EventLoop, limit: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    let wait = async {
        loop {
            if eventloop.poll().await.is_err() {
                return start.elapsed();
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok()
}

fn agent_id(dir: &std::path::Path, name: &str) -> Uuid {
    Identity::load(&dir.join(name))
        .expect("identity")
        .expect("enrolled")
        .agent_id
}

#[test]
fn enrolled_agents_report_over_mutual_tls_and_nobody_else_gets_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_port = free_port();
    let hub = Hub {
        db: unique("gw_e2e_enroll"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port },
        data: dir.path().join("hub-data"),
    };
    let _hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();

    // Enrollment with the hub CLI's tokens.
    let (a_name, b_name) = (unique("e2e-tls-a"), unique("e2e-tls-b"));
    let pcap = capture(dir.path(), "port_scan", "192.168.5.20");
    let a_cfg = agent_config(dir.path(), &a_name, None, &pcap, "192.168.5.0/24", 2.0);
    let b_cfg = agent_config(dir.path(), &b_name, None, &pcap, "192.168.5.0/24", 2.0);
    let (a_token, fingerprint) = token(&hub);
    let out = enroll(&hub, &a_cfg, &a_token, &fingerprint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("mqtts://127.0.0.1:{tls_port}")));
    let key_mode = std::fs::metadata(dir.path().join(&a_name).join("identity/agent.key"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("key");
    assert_eq!(key_mode, 0o600);

    let spent = enroll(&hub, &b_cfg, &a_token, &fingerprint);
    assert!(!spent.status.success(), "a token works once");
    assert!(
        String::from_utf8_lossy(&spent.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&spent.stderr)
    );
    let (b_token, _) = token(&hub);
    let wrong_ca = enroll(&hub, &b_cfg, &b_token, &"ab".repeat(32));
    assert!(!wrong_ca.status.success());
    assert!(String::from_utf8_lossy(&wrong_ca.stderr).contains("not your hub"));
    let (b_token, _) = token(&hub);
    let out = enroll(&hub, &b_cfg, &b_token, &fingerprint);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a_id, b_id) = (agent_id(dir.path(), &a_name), agent_id(dir.path(), &b_name));

    // Agent A runs and its predictions arrive over mutual TLS.
    let mut a = start_agent(dir.path(), &a_name, &a_cfg);
    let a_rows = format!(
        "SELECT count(*) AS n FROM predictions p JOIN devices d ON d.id = p.device_id WHERE d.agent_id = '{a_id}'"
    );
    wait_for("agent A's predictions", Duration::from_secs(60), || {
        count(&mut conn, &a_rows) >= 200
    });
    assert_eq!(
        statuses(&mut conn, &format!("SELECT status FROM agents WHERE id = '{a_id}'")),
        ["online"]
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let b = Identity::load(&dir.path().join(&b_name)).expect("b").expect("enrolled");

        // B's certificate with A's client id: refused.
        let (_c, mut el) = session(&b, &fleet::agent_client_id(a_id), tls_port);
        assert!(connected(&mut el).await.is_err(), "B must not log in as A");

        // B logs in as itself, then publishes predictions as A: the connection is closed and
        // nothing is stored.
        let (client, mut el) = session(&b, &fleet::agent_client_id(b_id), tls_port);
        connected(&mut el).await.expect("B logs in as itself");
        let forged_id = Uuid::now_v7();
        let batch = serde_json::json!({
            "schema": fleet::SCHEMA, "agent_id": a_id, "epoch": Uuid::now_v7(), "seq": 1,
            "predictions": [{
                "id": forged_id, "device": "192.168.5.99",
                "window": {"first_flow_id": 1, "last_flow_id": 10, "first_ts_ns": 1, "last_ts_ns": 2},
                "score": 0.99, "label": "attack", "confidence": 0.98, "family": "scan",
                "family_probs": {"scan": 0.99}, "model_version": "forged", "inference_latency_ms": 1.0
            }]
        });
        client
            .publish(
                fleet::topic(a_id, Channel::Predictions),
                QoS::AtLeastOnce,
                false,
                batch.to_string(),
            )
            .await
            .expect("queued");
        assert!(
            closed_within(&mut el, Duration::from_secs(5)).await.is_some(),
            "publishing as another agent must close the connection"
        );
        let forged = format!("SELECT count(*) AS n FROM predictions WHERE id = '{forged_id}'");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(count(&mut conn, &forged), 0, "the forged prediction must not be stored");

        // A certificate for A's id from another CA: the TLS handshake fails.
        let forged_dir = dir.path().join("forged");
        forge_identity(&dir.path().join(&a_name), &forged_dir);
        let forged = Identity::load(&forged_dir).expect("forged").expect("present");
        let (_c, mut el) = session(&forged, &fleet::agent_client_id(a_id), tls_port);
        assert!(
            connected(&mut el).await.is_err(),
            "a forged certificate must be refused"
        );
        // The same on QUIC (the hub's QUIC port has the MQTT port's number, on UDP).
        let models = dir.path().join("downloads");
        let quic = |id: &Identity| BulkClient::new(id, "127.0.0.1", tls_port).expect("quic client");
        let refused = quic(&forged).fetch_model("any", &models).await;
        assert!(matches!(refused, Err(BulkError::Quic(_))), "{refused:?}");
        let a = Identity::load(&dir.path().join(&a_name)).expect("a").expect("enrolled");
        let bundled = gatewatch_models::store::Metadata::load(&common::repo().join("models/default/metadata.json"))
            .expect("bundled metadata")
            .model_version;
        let fetched = quic(&a)
            .fetch_model(&bundled, &models)
            .await
            .expect("A may download the model");
        assert!(fetched.join("model.onnx").is_file());

        // Revoking B closes its live connections within seconds and refuses new ones.
        let (_client, mut el) = session(&b, &fleet::agent_client_id(b_id), tls_port);
        connected(&mut el).await.expect("B logs in again");
        let b_quic = quic(&b);
        let answer = b_quic.fetch_model("not-the-active-one", &models).await;
        assert!(
            matches!(answer, Err(BulkError::Hub(_))),
            "B is heard on QUIC: {answer:?}"
        );
        let out = hub.cli(&["agents", "revoke", &b_id.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let took = closed_within(&mut el, Duration::from_secs(10)).await;
        assert!(took.is_some(), "a revoked agent's connection must close within seconds");
        println!("revoked connection closed after {took:?}");
        let (_c, mut el) = session(&b, &fleet::agent_client_id(b_id), tls_port);
        assert!(connected(&mut el).await.is_err(), "a revoked agent must be refused");
        let live = b_quic.fetch_model(&bundled, &models).await;
        assert!(
            matches!(live, Err(BulkError::Quic(_))),
            "B's QUIC connection must be closed: {live:?}"
        );
        let fresh = quic(&b).fetch_model(&bundled, &models).await;
        assert!(
            matches!(fresh, Err(BulkError::Quic(_))),
            "B must be refused on QUIC: {fresh:?}"
        );
    });
    assert_eq!(
        statuses(&mut conn, &format!("SELECT status FROM agents WHERE id = '{b_id}'")),
        ["revoked"]
    );

    // A was never disturbed: it keeps delivering, and stops cleanly with everything stored once.
    let before = count(&mut conn, &a_rows);
    wait_for("more of agent A's predictions", Duration::from_secs(30), || {
        count(&mut conn, &a_rows) > before
    });

    // Both sides count what happened, in the Prometheus text format. The hub acknowledges a
    // batch after its transaction commits, so the agent may count it a moment after the rows
    // are visible.
    wait_for(
        "agent A's acknowledged batches in its metrics",
        Duration::from_secs(30),
        || {
            sample(
                &http_get(metrics_port(&a_cfg), "/metrics"),
                "gatewatch_agent_batches_acked_total",
            ) > 0.0
        },
    );
    let agent_metrics = http_get(metrics_port(&a_cfg), "/metrics");
    assert!(
        sample(&agent_metrics, "gatewatch_agent_windows_scored_total") > 0.0,
        "{agent_metrics}"
    );
    let hub_metrics = http_get(hub.port, "/metrics");
    assert_eq!(
        sample(&hub_metrics, "gatewatch_hub_agents{status=\"revoked\"}"),
        1.0,
        "{hub_metrics}"
    );
    assert!(sample(&hub_metrics, "gatewatch_hub_mqtt_topic_violations_total") >= 1.0);
    assert!(sample(&hub_metrics, "gatewatch_hub_mqtt_kicked_total") >= 1.0);
    assert!(sample(&hub_metrics, "gatewatch_hub_quic_refused_total") >= 2.0);
    assert!(sample(&hub_metrics, "gatewatch_hub_predictions_received_total") > 0.0);
    a.signal("-TERM");
    let log = a.wait(Duration::from_secs(60));
    let made = scored(&log);
    let distinct = format!(
        "SELECT count(DISTINCT p.id) AS n FROM predictions p JOIN devices d ON d.id = p.device_id WHERE d.agent_id = '{a_id}'"
    );
    assert_eq!(
        (count(&mut conn, &a_rows), count(&mut conn, &distinct)),
        (made, made),
        "{log}"
    );
}

/// An identity directory holding a certificate for the same agent id, signed by a CA of the
/// attacker's, beside the hub's real CA (which is public).
fn forge_identity(real: &std::path::Path, forged: &std::path::Path) {
    let id = forged.join("identity");
    std::fs::create_dir_all(&id).expect("mkdir");
    for file in ["ca.pem", "enrollment.json"] {
        std::fs::copy(real.join("identity").join(file), id.join(file)).expect("copy");
    }
    let agent = Identity::load(real).expect("real").expect("enrolled").agent_id;
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "gatewatch hub CA");
    let ca = ca.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, agent.to_string());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    std::fs::write(id.join("agent.pem"), cert.pem()).expect("write");
    std::fs::write(id.join("agent.key"), key.serialize_pem()).expect("write");
}
