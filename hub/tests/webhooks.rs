//! `webhook` prevention rules at the hub: an alert whose prediction reaches a rule's threshold
//! makes the hub POST it to the rule's URL (a receiver on loopback here), once per cooldown per
//! device, and the call is in the prevention log.

mod common;

use std::time::Duration;

use rocket::http::Status;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Accepts HTTP requests on loopback, answers 200 and passes each body on.
async fn receiver() -> (u16, tokio::sync::mpsc::Receiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = socket.read(&mut chunk).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                let Some(end) = text.find("\r\n\r\n") else { continue };
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break serde_json::from_slice::<Value>(&buf[end + 4..end + 4 + length]).ok();
                }
            };
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            if let Some(body) = body {
                let _ = tx.send(body).await;
            }
        }
    });
    (port, rx)
}

#[rocket::async_test]
async fn webhook_rules_post_alerts_once_per_cooldown_and_log_the_call() {
    let hub = common::Hub::start().await;
    let (port, mut received) = receiver().await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (s, rule) = hub
        .call(
            "POST",
            "/api/v1/prevention/rules",
            Some(&hub.admin),
            Some(
                json!({"rule_name": "page the on-call", "action_type": "webhook", "threshold": 0.8,
                        "cooldown_seconds": 3600, "webhook_url": url}),
            ),
        )
        .await;
    assert_eq!(s, Status::Created, "{rule}");
    let (s, strict) = hub
        .call(
            "POST",
            "/api/v1/prevention/rules",
            Some(&hub.admin),
            Some(
                json!({"rule_name": "only the worst", "action_type": "webhook", "threshold": 0.99,
                        "webhook_url": format!("http://127.0.0.1:{port}/strict")}),
            ),
        )
        .await;
    assert_eq!(s, Status::Created, "{strict}");
    let device = hub.device("cam").await;

    let ingest = |score: f64| {
        let p = common::prediction(device, score);
        let alert = json!({"id": Uuid::new_v4(), "device_id": device, "prediction_id": p["id"],
                           "alert_type": "threshold_breach", "severity": "high", "message": "m"});
        (json!({"predictions": [p], "alerts": [alert.clone()]}), alert)
    };
    let (body, alert) = ingest(0.95);
    let (s, v) = hub
        .call("POST", "/api/v1/traffic/ingest", Some(&hub.operator), Some(body))
        .await;
    assert_eq!(s, Status::Ok, "{v}");
    let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the webhook is called")
        .expect("a body");
    assert_eq!(
        (&got["event"], &got["rule_name"], &got["alert"]["id"], &got["score"]),
        (&json!("alert"), &json!("page the on-call"), &alert["id"], &json!(0.95)),
        "{got}"
    );
    // The strict rule (0.99) stays quiet.
    let extra = tokio::time::timeout(Duration::from_millis(700), received.recv()).await;
    assert!(extra.is_err(), "{extra:?}");

    let rule_id = rule["id"].as_str().expect("id");
    let mut logs = Value::Null;
    for _ in 0..50 {
        logs = hub
            .call(
                "GET",
                &format!("/api/v1/prevention/logs?rule_id={rule_id}"),
                Some(&hub.viewer),
                None,
            )
            .await
            .1;
        if logs["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = &logs["items"][0];
    assert_eq!(
        (
            &log["action_executed"],
            &log["success"],
            &log["details"]["status"],
            &log["details"]["url"]
        ),
        (&json!("webhook"), &json!(true), &json!(200), &json!(url)),
        "{logs}"
    );

    // Within the cooldown the rule does not call again.
    let (body, _) = ingest(0.97);
    hub.call("POST", "/api/v1/traffic/ingest", Some(&hub.operator), Some(body))
        .await;
    let again = tokio::time::timeout(Duration::from_millis(1500), received.recv()).await;
    assert!(again.is_err(), "{again:?}");
}
