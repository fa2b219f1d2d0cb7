//! WebSockets on a real listening hub: events arrive, a client that never reads stalls nobody.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

async fn post(port: u16, token: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn next_text<S>(ws: &mut S) -> serde_json::Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("event within 10 s")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("json event"),
            Some(Ok(_)) => continue,
            other => panic!("websocket ended: {other:?}"),
        }
    }
}

#[rocket::async_test]
async fn prediction_events_reach_live_and_device_channels() {
    let hub = common::serve(|_| {}).await;
    let (s, dev) = post(
        hub.port,
        &hub.operator,
        "/api/v1/devices",
        json!({"name": "cam", "device_type": "camera", "ip_address": "10.0.0.9", "protocol": "http", "port": 80}),
    )
    .await;
    assert_eq!(s, 201);
    let dev: Uuid = dev["id"].as_str().expect("id").parse().expect("uuid");
    let base = format!("ws://127.0.0.1:{}", hub.port);
    // No token, no socket.
    assert!(tokio_tungstenite::connect_async(format!("{base}/ws/live"))
        .await
        .is_err());
    let (mut live, _) = tokio_tungstenite::connect_async(format!("{base}/ws/live?token={}", hub.viewer))
        .await
        .expect("live");
    let (mut device, _) = tokio_tungstenite::connect_async(format!("{base}/ws/device/{dev}?token={}", hub.viewer))
        .await
        .expect("device");
    let (mut other, _) =
        tokio_tungstenite::connect_async(format!("{base}/ws/device/{}?token={}", Uuid::new_v4(), hub.viewer))
            .await
            .expect("other");
    let (mut alerts, _) = tokio_tungstenite::connect_async(format!("{base}/ws/alerts?token={}", hub.viewer))
        .await
        .expect("alerts");
    let p = common::prediction(dev, 0.87);
    let alert = json!({"id": Uuid::new_v4(), "device_id": dev, "alert_type": "threshold_breach", "severity": "high", "message": "m"});
    let (s, v) = post(
        hub.port,
        &hub.operator,
        "/api/v1/traffic/ingest",
        json!({"predictions": [p], "alerts": [alert]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for ws in [&mut live, &mut device] {
        let ev = next_text(ws).await;
        assert_eq!(ev["type"], "prediction");
        assert_eq!(ev["data"]["device_name"], "cam");
        assert_eq!(ev["data"]["score"], 0.87);
        assert_eq!(ev["data"]["label"], "attack");
    }
    let ev = next_text(&mut alerts).await;
    assert_eq!(
        (ev["type"].as_str(), ev["data"]["severity"].as_str()),
        (Some("alert"), Some("high"))
    );
    // Alerts are on the live feed too.
    assert_eq!(next_text(&mut live).await["type"], "alert");
    // A re-delivered prediction is not stored again and not announced again.
    post(
        hub.port,
        &hub.operator,
        "/api/v1/traffic/ingest",
        json!({"predictions": [p]}),
    )
    .await;
    let p2 = common::prediction(dev, 0.1);
    post(
        hub.port,
        &hub.operator,
        "/api/v1/traffic/ingest",
        json!({"predictions": [p2]}),
    )
    .await;
    assert_eq!(next_text(&mut live).await["data"]["id"], p2["id"]);
    // The other device's channel saw nothing.
    let got = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
    assert!(got.is_err(), "{got:?}");
    live.send(Message::Close(None)).await.ok();
    hub.shutdown.notify();
}

#[rocket::async_test]
async fn a_client_that_never_reads_does_not_stall_others() {
    let hub = common::serve(|c| c.ws_queue_len = 64).await;
    let (_, dev) = post(
        hub.port,
        &hub.operator,
        "/api/v1/devices",
        json!({"name": "cam", "device_type": "camera", "ip_address": "10.0.0.9", "protocol": "http", "port": 80}),
    )
    .await;
    let dev: Uuid = dev["id"].as_str().expect("id").parse().expect("uuid");
    let url = format!("ws://127.0.0.1:{}/ws/live?token={}", hub.port, hub.viewer);
    // Connected and never polled again: its socket buffers fill up and the hub's writes to it block.
    let (_stuck, _) = tokio_tungstenite::connect_async(&url).await.expect("stuck client");
    let (mut reader, _) = tokio_tungstenite::connect_async(&url).await.expect("reader");
    let started = std::time::Instant::now();
    // ~24 MB of events in total, well beyond loopback socket buffers; bounded in count and time.
    for round in 0..8 {
        let preds: Vec<_> = (0..10_000).map(|_| common::prediction(dev, 0.6)).collect();
        let marker = preds[preds.len() - 1]["id"].clone();
        let (s, v) = tokio::time::timeout(
            Duration::from_secs(60),
            post(
                hub.port,
                &hub.operator,
                "/api/v1/traffic/ingest",
                json!({ "predictions": preds }),
            ),
        )
        .await
        .expect("ingest is never blocked by a WebSocket client");
        assert_eq!(s, 200, "round {round}: {v}");
        // The reader gets the newest event of every burst promptly (older ones may be dropped for it too).
        loop {
            let ev = next_text(&mut reader).await;
            if ev["data"]["id"] == marker {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    let (s, report) = post(hub.port, &hub.admin, "/api/v1/settings/test-connection", json!(null)).await;
    assert_eq!(s, 200);
    assert!(
        report["websocket_events_dropped"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    hub.shutdown.notify();
}
