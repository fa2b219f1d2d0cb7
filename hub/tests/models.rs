//! `POST /predict` with the shipped model, and model uploads: checked in tract before they are
//! stored, activated atomically, kept across a restart.

mod common;

use std::path::{Path, PathBuf};

use common::{error_field, Hub};
use gatewatch_hub::model::ModelStore;
use rocket::http::{ContentType, Header, Status};
use serde_json::{json, Value};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default")
}

fn file(name: &str) -> Vec<u8> {
    std::fs::read(bundled().join(name)).expect("model file")
}

/// The bundled model's metadata (its version and threshold change with every retraining).
fn bundled_metadata() -> gatewatch_models::store::Metadata {
    gatewatch_models::store::Metadata::load(&bundled().join(gatewatch_models::store::METADATA_FILE))
        .expect("metadata.json")
}

/// The version the bundled model's metadata names.
fn bundled_version() -> String {
    bundled_metadata().model_version
}

/// A window of 10 identical flows: a short TCP exchange of a few small packets.
fn window() -> Value {
    let mut flow = vec![0.0f64; 78];
    flow[0] = 80.0; // Destination Port
    flow[1] = 20_000.0; // Flow Duration (µs)
    flow[2] = 3.0; // Total Fwd Packets
    flow[3] = 2.0; // Total Backward Packets
    json!(vec![flow; 10])
}

const BOUNDARY: &str = "gatewatch-test-boundary-7MA4YWxk";

fn multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        // Files as curl -F name=@file sends them, plain values as curl -F name=value.
        let head = if ["model", "scaler", "metadata"].contains(name) {
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
        } else {
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
        };
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(hub: &Hub, token: &str, parts: &[(&str, &[u8])]) -> (Status, Value) {
    let r = hub
        .client
        .post("/api/v1/settings/model/upload")
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .header(ContentType::new("multipart", "form-data").with_params(("boundary", BOUNDARY)))
        .body(multipart(parts))
        .dispatch()
        .await;
    let status = r.status();
    let text = r.into_string().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[rocket::async_test]
async fn predict_scores_stores_explains_and_validates() {
    let hub = Hub::start().await;
    let dev = hub.device("thermostat").await;
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": window()})),
        )
        .await;
    assert_eq!(s, Status::Ok, "{v}");
    let score = v["score"].as_f64().expect("score");
    assert!((0.0..=1.0).contains(&score));
    let threshold = f64::from(bundled_metadata().threshold);
    assert_eq!(v["label"], if score >= threshold { "attack" } else { "benign" });
    assert!((v["confidence"].as_f64().expect("confidence") - (score - 0.5).abs() * 2.0).abs() < 1e-5);
    assert_eq!(v["model_version"], bundled_version().as_str());
    let probs = v["family_probs"].as_object().expect("family_probs");
    assert_eq!(probs.len(), 9);
    assert!((probs.values().filter_map(Value::as_f64).sum::<f64>() - 1.0).abs() < 1e-3);
    let top = v["feature_importance"].as_array().expect("feature_importance");
    assert_eq!(top.len(), 10);
    assert!(top
        .iter()
        .all(|f| f["feature"].is_string() && f["importance"].is_number()));

    // Stored: in the device's history, with its explanation.
    let id = v["prediction_id"].as_str().expect("id");
    let (s, list) = hub
        .call("GET", &format!("/api/v1/predictions/{dev}"), Some(&hub.viewer), None)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(list["items"][0]["id"], id);
    let (s, e) = hub
        .call(
            "GET",
            &format!("/api/v1/predictions/{id}/explain"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(s, Status::Ok, "{e}");
    assert_eq!(e["feature_importance"].as_array().map(Vec::len), Some(10));

    // The same window scores the same; without explanation there is none.
    let (s, again) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": window(), "explain": false})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(again["score"], v["score"]);
    assert!(again["feature_importance"].is_null());

    // Validation names the field; an unknown device is 404.
    let mut short = window();
    short.as_array_mut().expect("rows").pop();
    let (s, e) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": short})),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(error_field(&e), "window");
    let mut narrow = window();
    narrow[3].as_array_mut().expect("row").pop();
    let (s, e) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": narrow})),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(error_field(&e), "window[3]");
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": uuid::Uuid::new_v4(), "window": window()})),
        )
        .await;
    assert_eq!(s, Status::NotFound);
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": window(), "x": 1})),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
}

#[rocket::async_test]
async fn predict_without_any_model_is_503() {
    let hub = Hub::start_with(|c| c.model_dir = "/nonexistent/model".into()).await;
    let dev = hub.device("cam").await;
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": window()})),
        )
        .await;
    assert_eq!(s, Status::ServiceUnavailable, "{v}");
    assert_eq!(v["error"]["code"], "no_model");
}

#[rocket::async_test]
async fn uploads_are_checked_activated_and_survive_a_restart() {
    let hub = Hub::start().await;
    let dev = hub.device("plug").await;
    let (onnx, scaler, metadata) = (file("model.onnx"), file("scaler.json"), file("metadata.json"));
    let good = |version: &'static [u8]| -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("model", onnx.clone()),
            ("scaler", scaler.clone()),
            ("metadata", metadata.clone()),
            ("version", version.to_vec()),
        ]
    };
    let parts = |p: &[(&'static str, Vec<u8>)]| p.iter().map(|(n, b)| (*n, b.clone())).collect::<Vec<_>>();
    let send = |p: Vec<(&'static str, Vec<u8>)>, token: String| {
        let hub = &hub;
        async move {
            let refs: Vec<(&str, &[u8])> = p.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            upload(hub, &token, &refs).await
        }
    };

    // Only admins upload.
    let (s, _) = send(good(b"site-2"), hub.operator.clone()).await;
    assert_eq!(s, Status::Forbidden);

    let (s, v) = send(good(b"site-2"), hub.admin.clone()).await;
    assert_eq!(s, Status::Created, "{v}");
    assert_eq!(v["model_version"], "site-2");
    assert_eq!(v["active"], true);
    assert!(hub.data.path().join("models/site-2/model.onnx").is_file());
    let (_, current) = hub
        .call("GET", "/api/v1/fl/model/current", Some(&hub.viewer), None)
        .await;
    assert_eq!(current["active_model"], "site-2");
    let (s, p) = hub
        .call(
            "POST",
            "/api/v1/predict",
            Some(&hub.operator),
            Some(json!({"device_id": dev, "window": window()})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(p["model_version"], "site-2");

    // The same version again is a conflict.
    let (s, _) = send(good(b"site-2"), hub.admin.clone()).await;
    assert_eq!(s, Status::Conflict);

    // Broken parts: 422 naming the part, nothing stored.
    let mut garbage = parts(&good(b"site-3"));
    garbage[0].1 = b"this is not an onnx graph".to_vec();
    let (s, e) = send(garbage, hub.admin.clone()).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(error_field(&e), "model");
    let mut truncated = parts(&good(b"site-3"));
    truncated[0].1.truncate(onnx.len() / 2);
    let (s, e) = send(truncated, hub.admin.clone()).await;
    assert_eq!(
        (s, error_field(&e).as_str()),
        (Status::UnprocessableEntity, "model"),
        "{e}"
    );
    let mut other_arch = parts(&good(b"site-3"));
    let mut m: Value = serde_json::from_slice(&metadata).expect("metadata json");
    m["arch_hash"] = json!("0000000000000000");
    other_arch[2].1 = m.to_string().into_bytes();
    let (s, e) = send(other_arch, hub.admin.clone()).await;
    assert_eq!(
        (s, error_field(&e).as_str()),
        (Status::UnprocessableEntity, "metadata"),
        "{e}"
    );
    let mut bad_scaler = parts(&good(b"site-3"));
    bad_scaler[1].1 = br#"{"mean": [1.0]}"#.to_vec();
    let (s, e) = send(bad_scaler, hub.admin.clone()).await;
    assert_eq!(
        (s, error_field(&e).as_str()),
        (Status::UnprocessableEntity, "scaler"),
        "{e}"
    );
    let (s, e) = send(good(b"../escape"), hub.admin.clone()).await;
    assert_eq!(
        (s, error_field(&e).as_str()),
        (Status::UnprocessableEntity, "version"),
        "{e}"
    );
    let mut missing = parts(&good(b"site-3"));
    missing.remove(1);
    let (s, e) = send(missing, hub.admin.clone()).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert!(!hub.data.path().join("models/site-3").exists());
    let stored: Vec<_> = std::fs::read_dir(hub.data.path().join("models"))
        .expect("models dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stored, ["site-2"], "no staging leftovers");

    // Stored but not activated; then switching models through the setting.
    let mut inactive = good(b"site-4");
    inactive.push(("activate", b"false".to_vec()));
    let (s, v) = send(inactive, hub.admin.clone()).await;
    assert_eq!((s, v["active"].as_bool()), (Status::Created, Some(false)), "{v}");
    let (s, e) = hub
        .call(
            "PUT",
            "/api/v1/settings/active_model",
            Some(&hub.admin),
            Some(json!({"value": "no-such-model"})),
        )
        .await;
    assert_eq!(
        (s, error_field(&e).as_str()),
        (Status::UnprocessableEntity, "value"),
        "{e}"
    );
    let (s, _) = hub
        .call(
            "PUT",
            "/api/v1/settings/active_model",
            Some(&hub.admin),
            Some(json!({"value": "site-4"})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(hub.app().models.active_name().as_deref(), Some("site-4"));
    // The list holds the bundled model and both uploads, the active one marked.
    let (s, list) = hub
        .call("GET", "/api/v1/settings/models", Some(&hub.viewer), None)
        .await;
    assert_eq!(s, Status::Ok, "{list}");
    let list = list.as_array().expect("list");
    assert_eq!(list[0]["origin"], "bundled");
    assert_eq!(list[0]["name"], gatewatch_hub::model::BUNDLED);
    let names: Vec<(&str, bool, &str)> = list
        .iter()
        .filter_map(|m| Some((m["name"].as_str()?, m["active"].as_bool()?, m["origin"].as_str()?)))
        .collect();
    assert!(names.contains(&("site-4", true, "uploaded")), "{names:?}");
    assert!(names.contains(&("site-2", false, "uploaded")), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.1).count(), 1, "{names:?}");
    let (s, _) = hub
        .call(
            "PUT",
            "/api/v1/settings/active_model",
            Some(&hub.admin),
            Some(json!({"value": gatewatch_hub::model::BUNDLED})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    let active = hub.app().models.active().expect("a model");
    assert_eq!(active.metadata().model_version, bundled_version());

    // A restart restores what the setting names from the data directory.
    let (s, _) = hub
        .call(
            "PUT",
            "/api/v1/settings/active_model",
            Some(&hub.admin),
            Some(json!({"value": "site-2"})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    let mut conn = hub.app().db.get().expect("connection");
    let name = gatewatch_hub::setup::active_model(&mut conn).expect("settings");
    assert_eq!(name.as_deref(), Some("site-2"));
    let restarted = ModelStore::open(&bundled(), hub.data.path());
    assert_eq!(restarted.active_name().as_deref(), Some(gatewatch_hub::model::BUNDLED));
    restarted.restore(name.as_deref());
    assert_eq!(restarted.active().expect("model").metadata().model_version, "site-2");
}

#[rocket::async_test]
async fn an_upload_over_the_limit_is_413() {
    let hub = Hub::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let (onnx, scaler, metadata) = (file("model.onnx"), file("scaler.json"), file("metadata.json"));
    assert!(onnx.len() > 64 * 1024);
    let (s, e) = upload(
        &hub,
        &hub.admin,
        &[("model", &onnx), ("scaler", &scaler), ("metadata", &metadata)],
    )
    .await;
    assert_eq!(s, Status::PayloadTooLarge, "{e}");
    assert_eq!(e["error"]["code"], "payload_too_large");
}
