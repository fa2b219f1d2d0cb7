//! Endpoint behaviour against a real PostgreSQL: success and validation paths of every resource.

mod common;

use common::{error_field, flow, prediction, Hub, PASSWORD};
use rocket::http::{ContentType, Header, Status};
use serde_json::json;
use uuid::Uuid;

#[rocket::async_test]
async fn auth_login_refresh_rotation_me_register() {
    let hub = Hub::start().await;
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "viewer", "password": "nope"})),
        )
        .await;
    assert_eq!(s, Status::Unauthorized, "{v}");
    let (s, v) = hub
        .call("POST", "/api/v1/auth/login", None, Some(json!({"username": "viewer"})))
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "password".into()));
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "viewer", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(v["user"]["role"], "viewer");
    let access = v["access_token"].as_str().expect("access").to_string();
    let refresh = v["refresh_token"].as_str().expect("refresh").to_string();
    let (s, me) = hub.call("GET", "/api/v1/auth/me", Some(&access), None).await;
    assert_eq!((s, me["username"].as_str()), (Status::Ok, Some("viewer")));
    // A refresh token is not an access token.
    assert_eq!(
        hub.call("GET", "/api/v1/auth/me", Some(&refresh), None).await.0,
        Status::Unauthorized
    );
    // Rotation: the first use works, the second is refused.
    let (s, v2) = hub
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(s, Status::Ok, "{v2}");
    assert_ne!(v2["refresh_token"], json!(refresh));
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(s, Status::Unauthorized);
    // The cookie path works too (tracked client keeps cookies from the last login/refresh).
    let r = hub.client.post("/api/v1/auth/refresh").dispatch().await;
    assert_eq!(r.status(), Status::Ok);
    // Register: admin only, validated.
    let body =
        json!({"username": "newbie", "email": "n@example.com", "password": "long enough pw", "role": "operator"});
    assert_eq!(
        hub.call("POST", "/api/v1/auth/register", Some(&hub.operator), Some(body.clone()))
            .await
            .0,
        Status::Forbidden
    );
    let (s, v) = hub
        .call("POST", "/api/v1/auth/register", Some(&hub.admin), Some(body.clone()))
        .await;
    assert_eq!((s, v["role"].as_str()), (Status::Created, Some("operator")), "{v}");
    let (s, v) = hub
        .call("POST", "/api/v1/auth/register", Some(&hub.admin), Some(body))
        .await;
    assert_eq!(s, Status::Conflict, "{v}");
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/auth/register",
            Some(&hub.admin),
            Some(json!({"username": "x y", "email": "a@b", "password": "long enough pw"})),
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "username".into()));
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "newbie", "password": "long enough pw"})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(
        hub.call("POST", "/api/v1/auth/logout", Some(&access), None).await.0,
        Status::NoContent
    );
}

/// A user changes their own password: the current one is checked, the new one validated, other
/// sessions end, and only the new password signs in. Admins list users; others may not.
#[rocket::async_test]
async fn password_change_and_user_list() {
    let hub = Hub::start().await;
    let login = |password: &'static str| {
        let hub = &hub;
        async move {
            hub.call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "viewer", "password": password})),
            )
            .await
        }
    };
    let (s, v) = login(PASSWORD).await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(v["user"]["must_change_password"], false);
    let access = v["access_token"].as_str().expect("access").to_string();
    let refresh = v["refresh_token"].as_str().expect("refresh").to_string();
    let change = |current: &'static str, new: &'static str| {
        let (hub, access) = (&hub, access.clone());
        async move {
            hub.call(
                "POST",
                "/api/v1/auth/password",
                Some(&access),
                Some(json!({"current_password": current, "new_password": new})),
            )
            .await
        }
    };
    let (s, v) = change("wrong password", "a-new-long-password").await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "current_password".into())
    );
    let (s, v) = change(PASSWORD, "short").await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "new_password".into())
    );
    let (s, v) = change(PASSWORD, PASSWORD).await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "new_password".into())
    );
    let (s, _) = change(PASSWORD, "a-new-long-password").await;
    assert_eq!(s, Status::NoContent);
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(s, Status::Unauthorized, "the other sessions ended");
    assert_eq!(login(PASSWORD).await.0, Status::Unauthorized);
    assert_eq!(login("a-new-long-password").await.0, Status::Ok);

    let (s, users) = hub.call("GET", "/api/v1/auth/users", Some(&hub.admin), None).await;
    assert_eq!(s, Status::Ok);
    let names: Vec<&str> = users
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert!(names.contains(&"viewer") && names.contains(&"admin"), "{names:?}");
    assert!(users
        .as_array()
        .expect("list")
        .iter()
        .all(|u| u.get("hashed_password").is_none()));
    let (s, _) = hub.call("GET", "/api/v1/auth/users", Some(&hub.operator), None).await;
    assert_eq!(s, Status::Forbidden);
}

#[rocket::async_test]
async fn login_is_rate_limited_with_retry_after() {
    let hub = Hub::start_with(|c| c.login_attempts_per_minute = 3).await;
    for _ in 0..3 {
        let (s, _) = hub
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "admin", "password": "bad"})),
            )
            .await;
        assert_eq!(s, Status::Unauthorized);
    }
    let r = hub
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": PASSWORD}).to_string()),
        )
        .await;
    assert_eq!(r.status(), Status::TooManyRequests);
    assert!(r
        .headers()
        .get_one("Retry-After")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|s| s >= 1));
}

#[rocket::async_test]
async fn per_user_rate_limit_answers_429() {
    let hub = Hub::start_with(|c| c.rate_limit_per_minute = 5).await;
    for _ in 0..5 {
        assert_eq!(
            hub.call("GET", "/api/v1/devices", Some(&hub.viewer), None).await.0,
            Status::Ok
        );
    }
    let r = hub.send("GET", "/api/v1/devices", Some(&hub.viewer), None).await;
    assert_eq!(r.status(), Status::TooManyRequests);
    assert!(r.headers().get_one("Retry-After").is_some());
    let body: serde_json::Value = serde_json::from_str(&r.into_string().await.unwrap_or_default()).expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another user is not affected.
    assert_eq!(
        hub.call("GET", "/api/v1/devices", Some(&hub.operator), None).await.0,
        Status::Ok
    );
}

#[rocket::async_test]
async fn devices_crud_pagination_filter_search() {
    let hub = Hub::start().await;
    for i in 0..7 {
        hub.device(&format!("cam_{i}")).await;
    }
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/devices",
            Some(&hub.operator),
            Some(json!({"name": "Thermo 100%", "device_type": "sensor", "ip_address": "fe80::1", "protocol": "coap", "port": 5683, "description": "attic"})),
        )
        .await;
    assert_eq!(s, Status::Created, "{v}");
    assert_eq!(v["ip_address"], "fe80::1");
    assert_eq!(v["status"], "offline");
    let id = v["id"].as_str().expect("id").to_string();
    let (s, page) = hub
        .call("GET", "/api/v1/devices?page=2&size=3", Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (s, page["total"].as_i64(), page["items"].as_array().map(Vec::len)),
        (Status::Ok, Some(8), Some(3))
    );
    let (_, found) = hub
        .call("GET", "/api/v1/devices?search=100%25", Some(&hub.viewer), None)
        .await;
    assert_eq!(found["total"], 1, "LIKE wildcards are literal: {found}");
    // PostgreSQL text cannot hold NUL: the client's input, so 422, not a 500 (found by schemathesis).
    let (s, v) = hub
        .call("GET", "/api/v1/devices?search=a%00b", Some(&hub.viewer), None)
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{v}");
    let (_, found) = hub
        .call("GET", "/api/v1/devices?device_type=sensor", Some(&hub.viewer), None)
        .await;
    assert_eq!(found["items"][0]["id"], json!(id));
    let (s, v) = hub
        .call("GET", "/api/v1/devices?status=bogus", Some(&hub.viewer), None)
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "status".into()));
    let (s, v) = hub.call("GET", "/api/v1/devices?size=0", Some(&hub.viewer), None).await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "size".into()));
    // Validation names the field.
    for (body, field) in [
        (
            json!({"name": "x", "device_type": "toaster", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 1}),
            "device_type",
        ),
        (
            json!({"name": "x", "device_type": "camera", "ip_address": "999.1.1.1", "protocol": "mqtt", "port": 1}),
            "ip_address",
        ),
        (
            json!({"name": "x", "device_type": "camera", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 0}),
            "port",
        ),
        (
            json!({"name": "x", "device_type": "camera", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 70000}),
            "port",
        ),
        (
            json!({"name": "", "device_type": "camera", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 1}),
            "name",
        ),
        (
            json!({"name": "x", "device_type": "camera", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 1, "colour": "red"}),
            "colour",
        ),
        (
            json!({"device_type": "camera", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 1}),
            "name",
        ),
    ] {
        let (s, v) = hub
            .call("POST", "/api/v1/devices", Some(&hub.operator), Some(body))
            .await;
        assert_eq!(
            (s, error_field(&v)),
            (Status::UnprocessableEntity, field.to_string()),
            "{v}"
        );
    }
    let (s, v) = hub
        .call("POST", "/api/v1/devices", Some(&hub.operator), Some(json!({"name": "cam_1", "device_type": "camera", "ip_address": "10.0.0.1", "protocol": "mqtt", "port": 1})))
        .await;
    assert_eq!((s, error_field(&v)), (Status::Conflict, "name".into()));
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/devices/{id}"),
            Some(&hub.operator),
            Some(json!({"status": "quarantined", "port": 5684})),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["port"].as_i64()),
        (Status::Ok, Some("quarantined"), Some(5684)),
        "{v}"
    );
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/devices/{id}"),
            Some(&hub.operator),
            Some(json!({"protocol": "smtp"})),
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "protocol".into()));
    assert_eq!(
        hub.call("GET", &format!("/api/v1/devices/{id}/status"), Some(&hub.viewer), None)
            .await
            .0,
        Status::Ok
    );
    let (s, st) = hub
        .call("GET", &format!("/api/v1/devices/{id}/stats"), Some(&hub.viewer), None)
        .await;
    assert_eq!((s, st["flows_total"].as_i64()), (Status::Ok, Some(0)));
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/devices/{id}/start"),
            Some(&hub.operator),
            None,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (Status::Conflict, Some("no_agent")),
        "a device no agent watches: {v}"
    );
    assert_eq!(
        hub.call("POST", &format!("/api/v1/devices/{id}/stop"), Some(&hub.operator), None)
            .await
            .0,
        Status::Conflict
    );
    assert_eq!(
        hub.call(
            "POST",
            &format!("/api/v1/devices/{}/start", Uuid::new_v4()),
            Some(&hub.operator),
            None
        )
        .await
        .0,
        Status::NotFound
    );
    assert_eq!(
        hub.call("DELETE", &format!("/api/v1/devices/{id}"), Some(&hub.operator), None)
            .await
            .0,
        Status::NoContent
    );
    assert_eq!(
        hub.call("GET", &format!("/api/v1/devices/{id}"), Some(&hub.viewer), None)
            .await
            .0,
        Status::NotFound
    );
    assert_eq!(
        hub.call("DELETE", &format!("/api/v1/devices/{id}"), Some(&hub.operator), None)
            .await
            .0,
        Status::NotFound
    );
    let (s, v) = hub
        .call("GET", "/api/v1/devices/not-a-uuid", Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (Status::UnprocessableEntity, Some("validation_failed"))
    );
}

#[rocket::async_test]
async fn ingest_is_idempotent_and_validated() {
    let hub = Hub::start().await;
    let dev = hub.device("cam").await;
    let flows: Vec<_> = (0..250).map(|i| flow(dev, i)).collect();
    let preds = vec![prediction(dev, 0.9), prediction(dev, 0.1)];
    let alert = json!({"id": Uuid::new_v4(), "device_id": dev, "prediction_id": preds[0]["id"], "alert_type": "threshold_breach", "severity": "high", "message": "score 0.9"});
    let body = json!({"flows": flows, "predictions": preds, "alerts": [alert]});
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(
        v,
        json!({"flows_received": 250, "flows_stored": 250, "predictions_stored": 2, "alerts_stored": 1})
    );
    let (s, v) = hub
        .call("POST", "/api/v1/traffic/ingest", Some(&hub.operator), Some(body))
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(
        v,
        json!({"flows_received": 250, "flows_stored": 0, "predictions_stored": 0, "alerts_stored": 0})
    );
    let (_, page) = hub
        .call(
            "GET",
            &format!("/api/v1/traffic/{dev}?size=10"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(page["total"], 250);
    assert_eq!(page["items"][0]["features"].as_array().map(Vec::len), Some(78));
    let (_, dv) = hub
        .call("GET", &format!("/api/v1/devices/{dev}"), Some(&hub.viewer), None)
        .await;
    assert!(dv["last_seen_at"].is_string(), "{dv}");
    // Validation: feature count, unknown device, range, oversize.
    let mut bad = flow(dev, 0);
    bad["features"] = json!([1.0, 2.0]);
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(json!({"flows": [flow(dev, 1), bad]})),
        )
        .await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "flows[1].features".into())
    );
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(json!({"flows": [flow(Uuid::new_v4(), 1)]})),
        )
        .await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "flows[0].device_id".into())
    );
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(json!({"predictions": [prediction(dev, 1.5)]})),
        )
        .await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "predictions[0].score".into())
    );
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(json!({"flows": [{"id": 1}]})),
        )
        .await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "flows[0].id".into())
    );
    let (s, v) = hub
        .call("POST", "/api/v1/traffic/ingest", Some(&hub.viewer), Some(json!({})))
        .await;
    assert_eq!(s, Status::Forbidden, "{v}");
    let r = hub
        .send("POST", "/api/v1/traffic/ingest", Some(&hub.operator), Some("{".into()))
        .await;
    assert_eq!(r.status(), Status::BadRequest);
    // CSV export: header with the published feature names, one line per flow.
    let r = hub
        .send("GET", &format!("/api/v1/traffic/{dev}/export"), Some(&hub.viewer), None)
        .await;
    assert_eq!(r.content_type(), Some(ContentType::CSV));
    let csv = r.into_string().await.unwrap_or_default();
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or("");
    assert_eq!(header.split(',').count(), 3 + 78);
    assert!(header.contains(gatewatch_proto::FEATURES[0].published));
    assert_eq!(lines.count(), 250);
    let (s, v) = hub
        .call(
            "GET",
            &format!("/api/v1/traffic/{dev}?from=yesterday"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "from".into()));
}

#[rocket::async_test]
async fn oversized_body_is_413() {
    let hub = Hub::start_with(|c| c.max_body_bytes = 4096).await;
    let dev = hub.device("cam").await;
    let flows: Vec<_> = (0..20).map(|i| flow(dev, i)).collect();
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(json!({ "flows": flows })),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (Status::PayloadTooLarge, Some("payload_too_large")),
        "{v}"
    );
}

#[rocket::async_test]
async fn pcap_upload_checks_format_and_needs_an_agent() {
    let hub = Hub::start_with(|c| c.max_upload_bytes = 2048).await;
    let dev = hub.device("cam").await;
    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    pcap.resize(24, 0);
    let post = |body: Vec<u8>, token: String, q: String| {
        hub.client
            .post(format!("/api/v1/traffic/upload-pcap?{q}"))
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .body(body)
    };
    let r = post(pcap.clone(), hub.operator.clone(), format!("device_id={dev}"))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Conflict);
    assert_eq!(
        post(
            b"hello, not a capture file".to_vec(),
            hub.operator.clone(),
            format!("device_id={dev}")
        )
        .dispatch()
        .await
        .status(),
        Status::UnprocessableEntity
    );
    assert_eq!(
        post(vec![0xd4; 4096], hub.operator.clone(), format!("device_id={dev}"))
            .dispatch()
            .await
            .status(),
        Status::PayloadTooLarge
    );
    assert_eq!(
        post(pcap.clone(), hub.operator.clone(), "device_id=nope".into())
            .dispatch()
            .await
            .status(),
        Status::UnprocessableEntity
    );
    assert_eq!(
        post(pcap, hub.viewer.clone(), format!("device_id={dev}"))
            .dispatch()
            .await
            .status(),
        Status::Forbidden
    );
    let stored = std::fs::read_dir(hub.data.path().join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "nothing is kept for a device no agent would replay it for");
}

#[rocket::async_test]
async fn predictions_alerts_and_dashboard() {
    let hub = Hub::start().await;
    let dev = hub.device("cam").await;
    let mut attack = prediction(dev, 0.95);
    attack["attack_type"] = json!("port_scan");
    let plain = prediction(dev, 0.2);
    let mut no_xai = prediction(dev, 0.7);
    no_xai["feature_importance"] = serde_json::Value::Null;
    let alert_id = Uuid::new_v4();
    let alert = json!({"id": alert_id, "device_id": dev, "alert_type": "threshold_breach", "severity": "critical", "message": "scan"});
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/traffic/ingest",
            Some(&hub.operator),
            Some(json!({"predictions": [attack, plain, no_xai], "alerts": [alert]})),
        )
        .await;
    assert_eq!(s, Status::Ok);
    let (s, v) = hub
        .call(
            "GET",
            &format!("/api/v1/predictions/{dev}?label=attack"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!((s, v["total"].as_i64()), (Status::Ok, Some(2)), "{v}");
    let (s, v) = hub
        .call("GET", "/api/v1/predictions/stats", Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (s, v["total"].as_i64(), v["attacks"].as_i64()),
        (Status::Ok, Some(3), Some(2)),
        "{v}"
    );
    let (s, v) = hub
        .call(
            "GET",
            &format!("/api/v1/predictions/{}/explain", attack["id"].as_str().unwrap_or("")),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(
        (s, v["feature_importance"][0]["feature"].as_str()),
        (Status::Ok, Some("Flow Duration")),
        "{v}"
    );
    let (s, _) = hub
        .call(
            "GET",
            &format!("/api/v1/predictions/{}/explain", no_xai["id"].as_str().unwrap_or("")),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(s, Status::NotFound);
    let (s, v) = hub
        .call(
            "GET",
            &format!("/api/v1/predictions/{dev}?label=maybe"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "label".into()));
    // Alerts.
    let (_, v) = hub
        .call("GET", "/api/v1/alerts/unread-count", Some(&hub.viewer), None)
        .await;
    assert_eq!(v["count"], 1);
    let (s, v) = hub
        .call(
            "GET",
            "/api/v1/alerts?severity=critical&acknowledged=false",
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!((s, v["total"].as_i64()), (Status::Ok, Some(1)));
    assert_eq!(
        hub.call("GET", &format!("/api/v1/alerts/{alert_id}"), Some(&hub.viewer), None)
            .await
            .0,
        Status::Ok
    );
    assert_eq!(
        hub.call(
            "PATCH",
            &format!("/api/v1/alerts/{alert_id}/acknowledge"),
            Some(&hub.viewer),
            None
        )
        .await
        .0,
        Status::Forbidden
    );
    let (s, v) = hub
        .call(
            "PATCH",
            &format!("/api/v1/alerts/{alert_id}/acknowledge"),
            Some(&hub.operator),
            None,
        )
        .await;
    assert_eq!((s, v["is_acknowledged"].as_bool()), (Status::Ok, Some(true)));
    assert_eq!(
        hub.call(
            "PATCH",
            &format!("/api/v1/alerts/{}/acknowledge", Uuid::new_v4()),
            Some(&hub.operator),
            None
        )
        .await
        .0,
        Status::NotFound
    );
    let (_, v) = hub
        .call("GET", "/api/v1/alerts/unread-count", Some(&hub.viewer), None)
        .await;
    assert_eq!(v["count"], 0);
    // Resolving: a verdict for the agent's local training set.
    let resolve = |body: serde_json::Value| {
        let hub = &hub;
        let path = format!("/api/v1/alerts/{alert_id}/resolve");
        async move { hub.call("PATCH", &path, Some(&hub.operator), Some(body)).await }
    };
    let (s, v) = resolve(json!({"verdict": "maybe"})).await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "verdict".into()));
    let (s, v) = resolve(json!({"verdict": "false_positive", "family": "scan"})).await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "family".into()));
    let (s, v) = resolve(json!({"verdict": "false_positive"})).await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(v["action_taken"], "resolved_false_positive", "{v}");
    assert!(
        v["windows_labelled"].as_u64().unwrap_or(0) >= 1,
        "the alert's window: {v}"
    );
    assert_eq!(v["label_sent"], false, "no agent watches this device: {v}");
    let (_, v) = hub.call("GET", "/api/v1/alerts/stats", Some(&hub.viewer), None).await;
    assert_eq!(
        (v["total"].as_i64(), v["by_severity"]["critical"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let (s, v) = hub
        .call("GET", "/api/v1/alerts?severity=apocalyptic", Some(&hub.viewer), None)
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "severity".into()));
    // Dashboard.
    let (s, v) = hub
        .call("GET", "/api/v1/dashboard/stats", Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (s, v["predictions_today"].as_i64(), v["attacks_today"].as_i64()),
        (Status::Ok, Some(3), Some(2)),
        "{v}"
    );
    assert_eq!(v["threat_level"], "critical");
    let (s, v) = hub
        .call(
            "GET",
            "/api/v1/dashboard/timeline?hours=1&bucket_minutes=5",
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(
        v.as_array()
            .map(|a| a.iter().map(|p| p["predictions"].as_i64().unwrap_or(0)).sum::<i64>()),
        Some(3)
    );
    let (s, v) = hub
        .call(
            "GET",
            "/api/v1/dashboard/timeline?bucket_minutes=0",
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "bucket_minutes".into())
    );
    let (_, v) = hub
        .call("GET", "/api/v1/dashboard/attack-distribution", Some(&hub.viewer), None)
        .await;
    let mut got: Vec<(String, i64)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["attack_type"].as_str().unwrap_or("").to_string(),
                        x["count"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    got.sort();
    assert_eq!(got, vec![("port_scan".to_string(), 1), ("unknown".to_string(), 1)]);
    let (_, v) = hub
        .call("GET", "/api/v1/dashboard/device-health", Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (v[0]["attacks_24h"].as_i64(), v[0]["unacknowledged_alerts"].as_i64()),
        (Some(2), Some(0)),
        "{v}"
    );
    // Deleting the device removes its data (documented cascade).
    assert_eq!(
        hub.call("DELETE", &format!("/api/v1/devices/{dev}"), Some(&hub.operator), None)
            .await
            .0,
        Status::NoContent
    );
    let (_, v) = hub
        .call("GET", "/api/v1/predictions/stats", Some(&hub.viewer), None)
        .await;
    assert_eq!(v["total"], 0);
}

#[rocket::async_test]
async fn attack_sessions() {
    let hub = Hub::start().await;
    let dev = hub.device("cam").await;
    let (s, v) = hub.call("GET", "/api/v1/attacks/types", Some(&hub.viewer), None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (Status::Ok, Some(10)));
    let body = json!({"device_id": dev, "steps": [
        {"attack_type": "ddos_flood", "duration_seconds": 30, "intensity": 0.7, "variant": "syn_flood"},
        {"attack_type": "port_scan", "adversarial_enabled": true, "adversarial_epsilon": 0.01}
    ]});
    assert_eq!(
        hub.call(
            "POST",
            "/api/v1/attacks/sessions",
            Some(&hub.viewer),
            Some(body.clone())
        )
        .await
        .0,
        Status::Forbidden
    );
    let (s, v) = hub
        .call("POST", "/api/v1/attacks/sessions", Some(&hub.operator), Some(body))
        .await;
    assert_eq!(s, Status::Created, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["steps"].as_array().map(Vec::len)),
        (Some("pending"), Some(2))
    );
    assert_eq!(v["steps"][1]["duration_seconds"], 30);
    let id = v["id"].as_str().unwrap_or("").to_string();
    for (body, field) in [
        (json!({"device_id": dev, "steps": []}), "steps"),
        (
            json!({"device_id": dev, "steps": [{"attack_type": "ddos_flood", "intensity": 2.0}]}),
            "steps[0].intensity",
        ),
        (
            json!({"device_id": dev, "steps": [{"attack_type": "port_scan", "adversarial_enabled": true}]}),
            "steps[0].adversarial_epsilon",
        ),
        (
            json!({"device_id": dev, "steps": [{"attack_type": "teleport"}]}),
            "steps[0].attack_type",
        ),
        (
            json!({"device_id": Uuid::new_v4(), "steps": [{"attack_type": "port_scan"}]}),
            "device_id",
        ),
    ] {
        let (s, v) = hub
            .call("POST", "/api/v1/attacks/sessions", Some(&hub.operator), Some(body))
            .await;
        assert_eq!(
            (s, error_field(&v)),
            (Status::UnprocessableEntity, field.to_string()),
            "{v}"
        );
    }
    let (s, v) = hub
        .call(
            "GET",
            &format!("/api/v1/attacks/sessions?device_id={dev}"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!((s, v["total"].as_i64()), (Status::Ok, Some(1)));
    let (s, v) = hub
        .call(
            "GET",
            &format!("/api/v1/attacks/sessions/{id}"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(
        (s, v["steps"][0]["attack_type"].as_str()),
        (Status::Ok, Some("ddos_flood"))
    );
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/attacks/sessions/{id}/start"),
            Some(&hub.operator),
            None,
        )
        .await;
    // No agent watches the device: nothing can run the session.
    assert_eq!((s, v["error"]["code"].as_str()), (Status::Conflict, Some("no_agent")));
    assert_eq!(
        hub.call(
            "POST",
            &format!("/api/v1/attacks/sessions/{id}/stop"),
            Some(&hub.operator),
            None
        )
        .await
        .0,
        Status::Conflict
    );
    let r = hub
        .send(
            "GET",
            &format!("/api/v1/attacks/sessions/{id}/report"),
            Some(&hub.viewer),
            None,
        )
        .await;
    let kind = r.content_type();
    let text = r.into_string().await.unwrap_or_default();
    assert_eq!(kind, Some(ContentType::HTML), "{text}");
    assert!(text.contains("syn_flood"));
    let r = hub
        .send(
            "GET",
            &format!("/api/v1/attacks/sessions/{id}/report?format=pdf"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(r.content_type(), Some(ContentType::PDF));
    assert!(r.into_bytes().await.unwrap_or_default().starts_with(b"%PDF-"));
    let (s, _) = hub
        .call(
            "GET",
            &format!("/api/v1/attacks/sessions/{id}/report?format=docx"),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(
        hub.call(
            "DELETE",
            &format!("/api/v1/attacks/sessions/{id}"),
            Some(&hub.operator),
            None
        )
        .await
        .0,
        Status::NoContent
    );
    assert_eq!(
        hub.call(
            "GET",
            &format!("/api/v1/attacks/sessions/{id}"),
            Some(&hub.viewer),
            None
        )
        .await
        .0,
        Status::NotFound
    );
}

#[rocket::async_test]
async fn prevention_rules_and_logs() {
    let hub = Hub::start().await;
    let dev = hub.device("cam").await;
    let body = json!({"rule_name": "block scanners", "device_id": dev, "threshold": 0.8, "action_type": "block_ip"});
    assert_eq!(
        hub.call(
            "POST",
            "/api/v1/prevention/rules",
            Some(&hub.operator),
            Some(body.clone())
        )
        .await
        .0,
        Status::Forbidden
    );
    let (s, v) = hub
        .call("POST", "/api/v1/prevention/rules", Some(&hub.admin), Some(body))
        .await;
    assert_eq!(
        (s, v["is_enabled"].as_bool(), v["cooldown_seconds"].as_i64()),
        (Status::Created, Some(true), Some(60)),
        "{v}"
    );
    let id = v["id"].as_str().unwrap_or("").to_string();
    for (body, field) in [
        (json!({"rule_name": "w", "action_type": "webhook"}), "webhook_url"),
        (
            json!({"rule_name": "t", "action_type": "alert_only", "threshold": -1}),
            "threshold",
        ),
        (json!({"rule_name": "a", "action_type": "nuke"}), "action_type"),
        (
            json!({"rule_name": "d", "action_type": "alert_only", "device_id": Uuid::new_v4()}),
            "device_id",
        ),
    ] {
        let (s, v) = hub
            .call("POST", "/api/v1/prevention/rules", Some(&hub.admin), Some(body))
            .await;
        assert_eq!(
            (s, error_field(&v)),
            (Status::UnprocessableEntity, field.to_string()),
            "{v}"
        );
    }
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/prevention/rules/{id}"),
            Some(&hub.admin),
            Some(json!({"threshold": 0.6, "cooldown_seconds": 5})),
        )
        .await;
    assert_eq!(
        (s, v["threshold"].as_f64(), v["cooldown_seconds"].as_i64()),
        (Status::Ok, Some(0.6), Some(5)),
        "{v}"
    );
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/prevention/rules/{id}"),
            Some(&hub.admin),
            Some(json!({"action_type": "webhook"})),
        )
        .await;
    assert_eq!(
        (s, error_field(&v)),
        (Status::UnprocessableEntity, "webhook_url".into())
    );
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/prevention/rules/{id}/toggle"),
            Some(&hub.admin),
            None,
        )
        .await;
    assert_eq!((s, v["is_enabled"].as_bool()), (Status::Ok, Some(false)));
    let (_, v) = hub
        .call("GET", "/api/v1/prevention/rules?enabled=false", Some(&hub.viewer), None)
        .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (s, v) = hub
        .call("GET", "/api/v1/prevention/logs", Some(&hub.viewer), None)
        .await;
    assert_eq!((s, v["total"].as_i64()), (Status::Ok, Some(0)));
    assert_eq!(
        hub.call(
            "DELETE",
            &format!("/api/v1/prevention/rules/{id}"),
            Some(&hub.admin),
            None
        )
        .await
        .0,
        Status::NoContent
    );
    assert_eq!(
        hub.call(
            "POST",
            &format!("/api/v1/prevention/rules/{id}/toggle"),
            Some(&hub.admin),
            None
        )
        .await
        .0,
        Status::NotFound
    );
}

#[rocket::async_test]
async fn fl_settings_and_test_connection() {
    let hub = Hub::start().await;
    {
        use diesel::prelude::*;
        let mut c = hub.app().db.get().expect("conn");
        diesel::sql_query(
            "INSERT INTO fl_rounds (round_number, num_clients, global_accuracy, aggregation_method, he_scheme) VALUES (1, 3, 0.97, 'fedavg_he', 'ckks')",
        )
        .execute(&mut c)
        .expect("round");
        diesel::sql_query("INSERT INTO fl_client_metrics (round_id, client_id, local_loss, local_accuracy, num_samples, training_time_sec, encrypted) SELECT id, 'gw-1', 0.1, 0.96, 1000, 2.5, true FROM fl_rounds")
            .execute(&mut c)
            .expect("metrics");
    }
    let (s, v) = hub.call("GET", "/api/v1/fl/rounds", Some(&hub.viewer), None).await;
    assert_eq!((s, v["total"].as_i64()), (Status::Ok, Some(1)));
    let (s, v) = hub.call("GET", "/api/v1/fl/rounds/1", Some(&hub.viewer), None).await;
    assert_eq!(
        (s, v["clients"][0]["client_id"].as_str()),
        (Status::Ok, Some("gw-1")),
        "{v}"
    );
    assert_eq!(
        hub.call("GET", "/api/v1/fl/rounds/2", Some(&hub.viewer), None).await.0,
        Status::NotFound
    );
    let (s, v) = hub.call("GET", "/api/v1/fl/status", Some(&hub.viewer), None).await;
    assert_eq!(
        (s, v["state"].as_str(), v["last_round"].as_i64()),
        (Status::Ok, Some("idle"), Some(1))
    );
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/fl/start",
            Some(&hub.admin),
            Some(json!({"num_rounds": 0})),
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "num_rounds".into()));
    assert_eq!(
        hub.call(
            "POST",
            "/api/v1/fl/start",
            Some(&hub.operator),
            Some(json!({"num_rounds": 5}))
        )
        .await
        .0,
        Status::Forbidden
    );
    // This hub has no fleet link: a run cannot start, and says why.
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/fl/start",
            Some(&hub.admin),
            Some(json!({"num_rounds": 5})),
        )
        .await;
    assert_eq!(s, Status::Conflict, "{v}");
    assert!(v.to_string().contains("embedded"), "{v}");
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/fl/start",
            Some(&hub.admin),
            Some(json!({"num_rounds": 5, "threshold": 4})),
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "threshold".into()));
    assert_eq!(
        hub.call("POST", "/api/v1/fl/stop", Some(&hub.admin), None).await.0,
        Status::Conflict
    );
    // Settings.
    let (s, v) = hub.call("GET", "/api/v1/settings", Some(&hub.viewer), None).await;
    assert_eq!(s, Status::Ok);
    assert!(v.as_array().is_some_and(|a| a
        .iter()
        .any(|x| x["key"] == "global_threshold" && x["is_default"] == true)));
    let (s, v) = hub
        .call(
            "PUT",
            "/api/v1/settings/global_threshold",
            Some(&hub.admin),
            Some(json!({"value": 0.7})),
        )
        .await;
    assert_eq!((s, v["value"].as_f64()), (Status::Ok, Some(0.7)), "{v}");
    let (s, v) = hub
        .call(
            "PUT",
            "/api/v1/settings/global_threshold",
            Some(&hub.admin),
            Some(json!({"value": "high"})),
        )
        .await;
    assert_eq!((s, error_field(&v)), (Status::UnprocessableEntity, "value".into()));
    assert_eq!(
        hub.call(
            "PUT",
            "/api/v1/settings/no_such_key",
            Some(&hub.admin),
            Some(json!({"value": 1}))
        )
        .await
        .0,
        Status::NotFound
    );
    assert_eq!(
        hub.call(
            "PUT",
            "/api/v1/settings/active_model",
            Some(&hub.operator),
            Some(json!({"value": "m"}))
        )
        .await
        .0,
        Status::Forbidden
    );
    // Only models that exist can become active (uploads: tests/models.rs).
    let (s, _) = hub
        .call(
            "PUT",
            "/api/v1/settings/active_model",
            Some(&hub.admin),
            Some(json!({"value": "cnn_lstm_v2"})),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (_, v) = hub
        .call("GET", "/api/v1/fl/model/current", Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (v["active_model"].as_str(), v["last_round"].as_i64()),
        (Some("cnn_lstm_default"), Some(1))
    );
    let (s, v) = hub
        .call("POST", "/api/v1/settings/test-connection", Some(&hub.admin), None)
        .await;
    assert_eq!((s, v["database"].as_str()), (Status::Ok, Some("ok")), "{v}");
}

#[rocket::async_test]
async fn openapi_lists_every_route_and_docs_render() {
    let hub = Hub::start().await;
    let (s, doc) = hub.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, Status::Ok);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    for route in hub.client.rocket().routes() {
        let uri = route.uri.to_string();
        if !uri.starts_with("/api/v1/") || route.method == rocket::http::Method::Options || uri.contains("openapi") {
            continue;
        }
        let path = uri.split('?').next().unwrap_or("").replace('<', "{").replace('>', "}");
        assert!(
            paths
                .get(&path)
                .and_then(|p| p.get(route.method.as_str().to_lowercase()))
                .is_some(),
            "missing {} {path}",
            route.method
        );
    }
    assert_eq!(doc["components"]["schemas"]["DeviceType"]["enum"][4], "smart_plug");
    let r = hub.client.get("/docs").dispatch().await;
    assert_eq!(r.content_type(), Some(ContentType::HTML));
    let page = r.into_string().await.expect("docs page");
    assert!(page.contains("/docs/swagger-ui-bundle.js"), "{page}");
    for file in ["/docs/swagger-ui-bundle.js", "/docs/init.js", "/docs/swagger-ui.css"] {
        let r = hub.client.get(file).dispatch().await;
        assert_eq!(r.status(), Status::Ok, "{file}");
    }
    let init = hub.client.get("/docs/init.js").dispatch().await.into_string().await;
    assert!(init.is_some_and(|s| s.contains("/api/v1/openapi.json")));
}

/// The console is served from the binary: the page, then every script and style it names, with
/// a content security policy that keeps it to its own origin.
#[rocket::async_test]
async fn console_is_served_with_its_assets() {
    let hub = Hub::start().await;
    let r = hub.client.get("/").dispatch().await;
    assert_eq!(r.status(), Status::Ok);
    assert_eq!(r.content_type(), Some(ContentType::HTML));
    let csp = r.headers().get_one("Content-Security-Policy").expect("CSP").to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let page = r.into_string().await.expect("page");
    let assets: Vec<String> = page
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(String::from)
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{page}");
    for a in &assets {
        let r = hub.client.get(a.as_str()).dispatch().await;
        assert_eq!(r.status(), Status::Ok, "{a}");
        let want = if a.ends_with(".js") {
            ContentType::JavaScript
        } else {
            ContentType::CSS
        };
        assert_eq!(r.content_type(), Some(want), "{a}");
    }
    let r = hub.client.get("/assets/missing.js").dispatch().await;
    assert_eq!(r.status(), Status::NotFound);
    // The API keeps its own answers for unknown routes.
    let (s, body) = hub.call("GET", "/api/v1/nowhere", None, None).await;
    assert_eq!(s, Status::NotFound);
    assert_eq!(body["error"]["code"], "not_found");
}

#[rocket::async_test]
async fn cors_only_for_configured_origins() {
    let hub = Hub::start_with(|c| c.cors_origins = vec!["https://ui.example".into()]).await;
    let r = hub
        .client
        .options("/api/v1/devices")
        .header(Header::new("Origin", "https://ui.example"))
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::NoContent);
    assert_eq!(
        r.headers().get_one("Access-Control-Allow-Origin"),
        Some("https://ui.example")
    );
    let r = hub
        .client
        .options("/api/v1/devices")
        .header(Header::new("Origin", "https://evil.example"))
        .dispatch()
        .await;
    assert_eq!(r.headers().get_one("Access-Control-Allow-Origin"), None);
}

/// Start/stop and capture replays go to the device's agent as commands: 202 with the command,
/// delivered once the agent is online, finished by the agent's answer (and by no other's).
#[rocket::async_test]
async fn commands_for_a_devices_agent_are_queued_delivered_and_answered() {
    use gatewatch_hub::broker::{commands, ingest};
    use gatewatch_proto::fleet::{self, AgentState, AgentStatus, CommandResult, Outcome};
    let hub = Hub::start_with(|c| c.max_upload_bytes = 4096).await;
    let agent = Uuid::now_v7();
    let status = |state| AgentStatus {
        schema: fleet::SCHEMA,
        agent_id: agent,
        state,
        name: "shed".into(),
        hostname: "gw".into(),
        version: "0.1.0".into(),
        model_version: None,
        heartbeat_secs: 10,
        sent_at_ms: 0,
        fl_local_windows: Default::default(),
    };
    let mut c = hub.db.conn();
    assert!(!ingest::status(&mut c, agent, &status(AgentState::Offline), chrono::Utc::now()).expect("status"));
    let dev = hub.device("cam").await;
    let (s, v) = hub
        .call(
            "PUT",
            &format!("/api/v1/devices/{dev}"),
            Some(&hub.operator),
            Some(json!({"agent_id": agent})),
        )
        .await;
    assert_eq!(s, Status::Ok, "{v}");

    let (s, start) = hub
        .call(
            "POST",
            &format!("/api/v1/devices/{dev}/start"),
            Some(&hub.operator),
            None,
        )
        .await;
    assert_eq!(s, Status::Accepted, "{start}");
    assert_eq!(
        (
            start["command"].as_str(),
            start["status"].as_str(),
            start["payload"]["ip"].as_str()
        ),
        (Some("device.start"), Some("pending"), Some("10.0.0.7"))
    );
    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    pcap.resize(64, 7);
    let r = hub
        .client
        .post(format!("/api/v1/traffic/upload-pcap?device_id={dev}"))
        .header(Header::new("Authorization", format!("Bearer {}", hub.operator)))
        .body(pcap.clone())
        .dispatch()
        .await;
    assert_eq!(r.status(), Status::Accepted);
    let replay: serde_json::Value = serde_json::from_str(&r.into_string().await.expect("body")).expect("json");
    assert_eq!(replay["payload"]["bytes"], 64);
    assert_eq!(
        replay["payload"]["sha256"].as_str(),
        Some(gatewatch_proto::enroll::sha256_hex(&pcap).as_str())
    );
    let upload: Uuid = replay["payload"]["upload_id"]
        .as_str()
        .expect("upload id")
        .parse()
        .expect("uuid");
    let kept = gatewatch_hub::api::traffic::upload_path(hub.data.path(), upload);
    assert_eq!(std::fs::read(&kept).expect("the upload waits for its agent"), pcap);

    // Nothing is delivered to an offline agent; everything once it comes online.
    assert!(commands::due(&mut c).expect("due").is_empty());
    assert!(ingest::status(&mut c, agent, &status(AgentState::Online), chrono::Utc::now()).expect("status"));
    let due = commands::due(&mut c).expect("due");
    assert_eq!(due.len(), 2);
    for row in &due {
        assert!(commands::action(row).is_ok(), "{row:?}");
        commands::mark(&mut c, row.id, "delivered", None).expect("mark");
    }
    assert!(commands::due(&mut c).expect("due").is_empty());
    // The agent drops off before answering: when it is back, it gets them again.
    ingest::status(&mut c, agent, &status(AgentState::Offline), chrono::Utc::now()).expect("status");
    assert!(ingest::status(&mut c, agent, &status(AgentState::Online), chrono::Utc::now()).expect("status"));
    assert!(!ingest::status(&mut c, agent, &status(AgentState::Online), chrono::Utc::now()).expect("heartbeat"));
    assert_eq!(commands::due(&mut c).expect("due").len(), 2);

    let start_id: Uuid = start["id"].as_str().expect("id").parse().expect("uuid");
    let answer = |outcome| CommandResult {
        schema: fleet::SCHEMA,
        command_id: start_id,
        outcome,
        message: "monitoring 10.0.0.7".into(),
    };
    assert!(
        commands::finish(&mut c, Uuid::now_v7(), &answer(Outcome::Done))
            .expect("finish")
            .is_none(),
        "another agent cannot answer for this one"
    );
    let done = commands::finish(&mut c, agent, &answer(Outcome::Done))
        .expect("finish")
        .expect("open");
    assert_eq!(done.status, "done");
    assert!(
        commands::finish(&mut c, agent, &answer(Outcome::Failed))
            .expect("finish")
            .is_none(),
        "a finished command stays finished"
    );
    let (s, v) = hub
        .call("GET", &format!("/api/v1/commands/{start_id}"), Some(&hub.viewer), None)
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["result"].as_str()),
        (Status::Ok, Some("done"), Some("monitoring 10.0.0.7"))
    );
    let (s, _) = hub
        .call(
            "GET",
            &format!("/api/v1/commands/{}", Uuid::new_v4()),
            Some(&hub.viewer),
            None,
        )
        .await;
    assert_eq!(s, Status::NotFound);
}
