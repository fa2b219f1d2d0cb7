//! Every route × every role: no token → 401, a role below the route's → 403, otherwise neither.

mod common;

use common::Hub;
use rocket::http::Status;
use serde_json::json;
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
enum Need {
    Public,
    Viewer,
    Operator,
    Admin,
}

#[rocket::async_test]
async fn role_route_matrix() {
    let hub = Hub::start().await;
    let id = Uuid::new_v4();
    use Need::*;
    let routes: Vec<(&str, String, Need)> = vec![
        ("POST", "/api/v1/auth/register".into(), Admin),
        ("GET", "/api/v1/auth/me".into(), Viewer),
        ("GET", "/api/v1/auth/users".into(), Admin),
        ("POST", "/api/v1/auth/password".into(), Viewer),
        ("POST", "/api/v1/auth/logout".into(), Viewer),
        ("GET", "/api/v1/agents".into(), Viewer),
        ("GET", format!("/api/v1/commands/{id}"), Viewer),
        ("GET", "/api/v1/devices".into(), Viewer),
        ("POST", "/api/v1/devices".into(), Operator),
        ("GET", format!("/api/v1/devices/{id}"), Viewer),
        ("PUT", format!("/api/v1/devices/{id}"), Operator),
        ("DELETE", format!("/api/v1/devices/{id}"), Operator),
        ("POST", format!("/api/v1/devices/{id}/start"), Operator),
        ("POST", format!("/api/v1/devices/{id}/stop"), Operator),
        ("GET", format!("/api/v1/devices/{id}/status"), Viewer),
        ("GET", format!("/api/v1/devices/{id}/stats"), Viewer),
        ("POST", "/api/v1/traffic/ingest".into(), Operator),
        ("GET", format!("/api/v1/traffic/{id}"), Viewer),
        ("GET", format!("/api/v1/traffic/{id}/export"), Viewer),
        ("POST", format!("/api/v1/traffic/upload-pcap?device_id={id}"), Operator),
        ("POST", "/api/v1/predict".into(), Operator),
        ("GET", format!("/api/v1/predictions/{id}"), Viewer),
        ("GET", "/api/v1/predictions/stats".into(), Viewer),
        ("GET", format!("/api/v1/predictions/{id}/explain"), Viewer),
        ("GET", "/api/v1/alerts".into(), Viewer),
        ("GET", format!("/api/v1/alerts/{id}"), Viewer),
        ("PATCH", format!("/api/v1/alerts/{id}/acknowledge"), Operator),
        ("PATCH", format!("/api/v1/alerts/{id}/resolve"), Operator),
        ("GET", "/api/v1/alerts/unread-count".into(), Viewer),
        ("GET", "/api/v1/alerts/stats".into(), Viewer),
        ("GET", "/api/v1/attacks/types".into(), Viewer),
        ("POST", "/api/v1/attacks/sessions".into(), Operator),
        ("GET", "/api/v1/attacks/sessions".into(), Viewer),
        ("GET", format!("/api/v1/attacks/sessions/{id}"), Viewer),
        ("DELETE", format!("/api/v1/attacks/sessions/{id}"), Operator),
        ("POST", format!("/api/v1/attacks/sessions/{id}/start"), Operator),
        ("POST", format!("/api/v1/attacks/sessions/{id}/stop"), Operator),
        ("GET", format!("/api/v1/attacks/sessions/{id}/report"), Viewer),
        ("GET", "/api/v1/prevention/rules".into(), Viewer),
        ("POST", "/api/v1/prevention/rules".into(), Admin),
        ("PUT", format!("/api/v1/prevention/rules/{id}"), Admin),
        ("DELETE", format!("/api/v1/prevention/rules/{id}"), Admin),
        ("POST", format!("/api/v1/prevention/rules/{id}/toggle"), Admin),
        ("GET", "/api/v1/prevention/logs".into(), Viewer),
        ("GET", "/api/v1/fl/rounds".into(), Viewer),
        ("GET", "/api/v1/fl/rounds/1".into(), Viewer),
        ("GET", "/api/v1/fl/status".into(), Viewer),
        ("POST", "/api/v1/fl/start".into(), Admin),
        ("POST", "/api/v1/fl/stop".into(), Admin),
        ("GET", "/api/v1/fl/model/current".into(), Viewer),
        ("GET", "/api/v1/fl/model/download".into(), Viewer),
        ("GET", "/api/v1/fl/runs".into(), Viewer),
        ("GET", "/api/v1/dashboard/stats".into(), Viewer),
        ("GET", "/api/v1/dashboard/timeline".into(), Viewer),
        ("GET", "/api/v1/dashboard/attack-distribution".into(), Viewer),
        ("GET", "/api/v1/dashboard/device-health".into(), Viewer),
        ("GET", "/api/v1/settings".into(), Viewer),
        ("PUT", "/api/v1/settings/global_threshold".into(), Admin),
        ("POST", "/api/v1/settings/model/upload".into(), Admin),
        ("POST", "/api/v1/settings/test-connection".into(), Admin),
        ("GET", "/api/v1/settings/models".into(), Viewer),
        ("POST", "/api/v1/agents/enrollment-tokens".into(), Admin),
        ("POST", "/api/v1/agents/enroll".into(), Public),
        ("POST", format!("/api/v1/agents/{id}/revoke"), Admin),
        ("POST", "/api/v1/auth/login".into(), Public),
        ("POST", "/api/v1/auth/refresh".into(), Public),
        ("GET", "/api/v1/openapi.json".into(), Public),
    ];
    // The table must cover every mounted API route.
    let mounted = hub
        .client
        .rocket()
        .routes()
        .filter(|r| r.uri.to_string().starts_with("/api/v1/") && r.method != rocket::http::Method::Options)
        .count();
    assert_eq!(routes.len(), mounted, "update the matrix when routes are added");
    let tokens = [
        (Need::Viewer, hub.viewer.clone()),
        (Need::Operator, hub.operator.clone()),
        (Need::Admin, hub.admin.clone()),
    ];
    for (method, path, need) in &routes {
        let body = (*method != "GET" && *method != "DELETE").then(|| json!({}));
        let (s, v) = hub.call(method, path, None, body.clone()).await;
        if *need == Public {
            // Public routes answer on their own terms (login/refresh say 401 for bad credentials).
            assert!(s != Status::Forbidden && s.code < 500, "{method} {path}: {s} {v}");
            continue;
        }
        assert_eq!(s, Status::Unauthorized, "{method} {path} without token: {v}");
        assert_eq!(v["error"]["code"], "unauthorized");
        let (s, _) = hub.call(method, path, Some("not.a.jwt"), body.clone()).await;
        assert_eq!(s, Status::Unauthorized, "{method} {path} with a bad token");
        for (role, token) in &tokens {
            let (s, v) = hub.call(method, path, Some(token), body.clone()).await;
            if role < need {
                assert_eq!(s, Status::Forbidden, "{method} {path} as {role:?}: {v}");
                assert_eq!(v["error"]["code"], "forbidden");
            } else {
                assert!(
                    s != Status::Forbidden && s != Status::Unauthorized,
                    "{method} {path} as {role:?}: {s} {v}"
                );
                assert!(s.code < 500, "{method} {path} as {role:?}: {s} {v}");
            }
        }
    }
}
