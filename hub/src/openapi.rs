//! The OpenAPI 3 document, built from the mounted Rocket routes (so no route is missing) plus the
//! request schemas derived from the Rust types; served at `/api/v1/openapi.json`, browsable at `/docs` (Swagger UI, see `ui.rs`).

use rocket::http::ContentType;
use rocket::{Route, State};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gatewatch hub API",
        description = "IoT intrusion detection hub: devices, traffic, predictions, alerts, attacks, prevention, federated learning."
    ),
    components(schemas(
        crate::error::ErrorBody,
        crate::error::ErrorDetail,
        crate::error::FieldError,
        api::auth::RegisterIn,
        api::auth::LoginIn,
        api::auth::PasswordIn,
        api::auth::RefreshIn,
        api::auth::TokenOut,
        api::auth::UserOut,
        crate::auth::Role,
        api::agents::AgentOut,
        api::commands::AgentCommand,
        api::agents::NewToken,
        api::agents::TokenIssued,
        gatewatch_proto::enroll::EnrollRequest,
        gatewatch_proto::enroll::EnrollResponse,
        api::devices::Device,
        api::devices::NewDevice,
        api::devices::UpdateDevice,
        api::devices::DeviceLiveStatus,
        api::devices::DeviceStats,
        api::DeviceType,
        api::Protocol,
        api::DeviceStatus,
        api::DeviceSort,
        api::TrafficSource,
        api::FlowSource,
        api::Label,
        api::AlertType,
        api::Severity,
        api::AttackType,
        api::SessionStatus,
        api::ActionType,
        api::Count,
        api::traffic::IngestIn,
        api::traffic::FlowIn,
        api::traffic::PredictionIn,
        api::traffic::AlertIn,
        api::traffic::IngestOut,
        api::traffic::Flow,
        crate::db::models::Prediction,
        crate::db::models::Alert,
        crate::db::models::AttackSession,
        crate::db::models::AttackStep,
        crate::db::models::PreventionRule,
        crate::db::models::PreventionLog,
        crate::db::models::FlRound,
        crate::db::models::FlClientMetric,
        api::predictions::PredictIn,
        api::predictions::PredictOut,
        api::predictions::FeatureImportance,
        api::predictions::PredictionStats,
        api::predictions::Explanation,
        api::alerts::AlertStats,
        api::alerts::ResolveIn,
        api::alerts::Resolved,
        api::attacks::AttackTypeInfo,
        api::attacks::SessionIn,
        api::attacks::StepIn,
        api::attacks::Started,
        api::attacks::SessionOut,
        api::prevention::RuleIn,
        api::prevention::RuleUpdate,
        api::fl::FlStatus,
        api::fl::RunStarted,
        api::fl::RunStopping,
        api::fl::ModelInfo,
        crate::fl::RunParams,
        crate::fl::Activate,
        crate::fl::Status,
        crate::fl::MemberStatus,
        crate::db::models::FlRun,
        api::dashboard::DashboardStats,
        api::dashboard::TimelinePoint,
        api::dashboard::AttackShare,
        api::dashboard::DeviceHealth,
        api::settings::SettingOut,
        api::settings::SettingIn,
        api::settings::ModelUploaded,
        api::settings::ConnectionReport,
    ))
)]
struct Components;

/// (method, path, request body schema, success status, response schema).
type Op = (
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    Option<&'static str>,
);

/// Request body schema, success status and response schema per operation; everything else comes from the routes.
const OPS: &[Op] = &[
    (
        "POST",
        "/api/v1/auth/register",
        Some("RegisterIn"),
        201,
        Some("UserOut"),
    ),
    ("POST", "/api/v1/auth/login", Some("LoginIn"), 200, Some("TokenOut")),
    ("POST", "/api/v1/auth/refresh", Some("RefreshIn"), 200, Some("TokenOut")),
    ("POST", "/api/v1/auth/logout", None, 204, None),
    ("GET", "/api/v1/auth/me", None, 200, Some("UserOut")),
    ("GET", "/api/v1/auth/users", None, 200, None),
    ("POST", "/api/v1/auth/password", Some("PasswordIn"), 204, None),
    ("POST", "/api/v1/devices", Some("NewDevice"), 201, Some("Device")),
    ("GET", "/api/v1/agents", None, 200, None),
    ("GET", "/api/v1/commands/{id}", None, 200, Some("AgentCommand")),
    ("POST", "/api/v1/devices/{id}/start", None, 202, Some("AgentCommand")),
    ("POST", "/api/v1/devices/{id}/stop", None, 202, Some("AgentCommand")),
    ("POST", "/api/v1/traffic/upload-pcap", None, 202, Some("AgentCommand")),
    (
        "POST",
        "/api/v1/agents/enrollment-tokens",
        Some("NewToken"),
        201,
        Some("TokenIssued"),
    ),
    (
        "POST",
        "/api/v1/agents/enroll",
        Some("EnrollRequest"),
        200,
        Some("EnrollResponse"),
    ),
    ("POST", "/api/v1/agents/{id}/revoke", None, 200, Some("AgentOut")),
    ("GET", "/api/v1/devices/{id}", None, 200, Some("Device")),
    ("PUT", "/api/v1/devices/{id}", Some("UpdateDevice"), 200, Some("Device")),
    ("DELETE", "/api/v1/devices/{id}", None, 204, None),
    (
        "GET",
        "/api/v1/devices/{id}/status",
        None,
        200,
        Some("DeviceLiveStatus"),
    ),
    ("GET", "/api/v1/devices/{id}/stats", None, 200, Some("DeviceStats")),
    (
        "POST",
        "/api/v1/traffic/ingest",
        Some("IngestIn"),
        200,
        Some("IngestOut"),
    ),
    ("POST", "/api/v1/predict", Some("PredictIn"), 200, Some("PredictOut")),
    ("GET", "/api/v1/predictions/stats", None, 200, Some("PredictionStats")),
    (
        "GET",
        "/api/v1/predictions/{id}/explain",
        None,
        200,
        Some("Explanation"),
    ),
    ("GET", "/api/v1/alerts/{id}", None, 200, Some("Alert")),
    ("PATCH", "/api/v1/alerts/{id}/acknowledge", None, 200, Some("Alert")),
    ("GET", "/api/v1/alerts/unread-count", None, 200, Some("Count")),
    ("GET", "/api/v1/alerts/stats", None, 200, Some("AlertStats")),
    ("POST", "/api/v1/attacks/sessions", Some("SessionIn"), 201, None),
    ("DELETE", "/api/v1/attacks/sessions/{id}", None, 204, None),
    (
        "POST",
        "/api/v1/attacks/sessions/{id}/start",
        None,
        202,
        Some("Started"),
    ),
    (
        "POST",
        "/api/v1/attacks/sessions/{id}/stop",
        None,
        202,
        Some("AgentCommand"),
    ),
    (
        "POST",
        "/api/v1/prevention/rules",
        Some("RuleIn"),
        201,
        Some("PreventionRule"),
    ),
    (
        "PUT",
        "/api/v1/prevention/rules/{id}",
        Some("RuleUpdate"),
        200,
        Some("PreventionRule"),
    ),
    ("DELETE", "/api/v1/prevention/rules/{id}", None, 204, None),
    (
        "POST",
        "/api/v1/prevention/rules/{id}/toggle",
        None,
        200,
        Some("PreventionRule"),
    ),
    (
        "PATCH",
        "/api/v1/alerts/{id}/resolve",
        Some("ResolveIn"),
        200,
        Some("Resolved"),
    ),
    ("GET", "/api/v1/fl/status", None, 200, Some("FlStatus")),
    ("POST", "/api/v1/fl/start", Some("RunParams"), 202, Some("RunStarted")),
    ("POST", "/api/v1/fl/stop", None, 202, Some("RunStopping")),
    ("GET", "/api/v1/fl/model/current", None, 200, Some("ModelInfo")),
    ("GET", "/api/v1/dashboard/stats", None, 200, Some("DashboardStats")),
    (
        "PUT",
        "/api/v1/settings/{key}",
        Some("SettingIn"),
        200,
        Some("SettingOut"),
    ),
    (
        "POST",
        "/api/v1/settings/model/upload",
        None,
        201,
        Some("ModelUploaded"),
    ),
    ("GET", "/api/v1/settings/models", None, 200, None),
    (
        "POST",
        "/api/v1/settings/test-connection",
        None,
        200,
        Some("ConnectionReport"),
    ),
];

/// Query parameters of the `<q..>` routes: (path, name, type, format or enum schema name).
const QUERIES: &[(&str, &str, &str, Option<&str>)] = &[
    ("/api/v1/devices", "status", "ref", Some("DeviceStatus")),
    ("/api/v1/devices", "device_type", "ref", Some("DeviceType")),
    ("/api/v1/devices", "agent_id", "string", Some("uuid")),
    ("/api/v1/devices", "search", "string", None),
    ("/api/v1/devices", "sort", "ref", Some("DeviceSort")),
    ("/api/v1/devices", "desc", "boolean", None),
    ("/api/v1/traffic/{device_id}", "from", "string", Some("date-time")),
    ("/api/v1/traffic/{device_id}", "to", "string", Some("date-time")),
    (
        "/api/v1/traffic/{device_id}/export",
        "from",
        "string",
        Some("date-time"),
    ),
    ("/api/v1/traffic/{device_id}/export", "to", "string", Some("date-time")),
    ("/api/v1/traffic/{device_id}/export", "limit", "integer", None),
    ("/api/v1/traffic/upload-pcap", "device_id", "string", Some("uuid")),
    ("/api/v1/predictions/{device_id}", "label", "ref", Some("Label")),
    ("/api/v1/predictions/{device_id}", "from", "string", Some("date-time")),
    ("/api/v1/predictions/{device_id}", "to", "string", Some("date-time")),
    ("/api/v1/predictions/stats", "from", "string", Some("date-time")),
    ("/api/v1/predictions/stats", "to", "string", Some("date-time")),
    ("/api/v1/alerts", "device_id", "string", Some("uuid")),
    ("/api/v1/alerts", "severity", "ref", Some("Severity")),
    ("/api/v1/alerts", "alert_type", "ref", Some("AlertType")),
    ("/api/v1/alerts", "acknowledged", "boolean", None),
    ("/api/v1/attacks/sessions", "device_id", "string", Some("uuid")),
    ("/api/v1/attacks/sessions", "status", "ref", Some("SessionStatus")),
    ("/api/v1/prevention/rules", "device_id", "string", Some("uuid")),
    ("/api/v1/prevention/rules", "enabled", "boolean", None),
    ("/api/v1/prevention/logs", "device_id", "string", Some("uuid")),
    ("/api/v1/prevention/logs", "rule_id", "string", Some("uuid")),
    ("/api/v1/dashboard/timeline", "hours", "integer", None),
    ("/api/v1/dashboard/timeline", "bucket_minutes", "integer", None),
    ("/api/v1/dashboard/timeline", "device_id", "string", Some("uuid")),
    ("/api/v1/dashboard/attack-distribution", "hours", "integer", None),
];

/// Paged lists accept `page` and `size`.
const PAGED: &[&str] = &[
    "/api/v1/devices",
    "/api/v1/traffic/{device_id}",
    "/api/v1/predictions/{device_id}",
    "/api/v1/alerts",
    "/api/v1/attacks/sessions",
    "/api/v1/prevention/logs",
    "/api/v1/fl/rounds",
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn path_param(name: &str) -> Value {
    let schema = match name {
        "round_number" => json!({ "type": "integer", "format": "int32" }),
        "key" => json!({ "type": "string" }),
        _ => json!({ "type": "string", "format": "uuid" }),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

/// `/api/v1/devices/<id>?<q..>` → (`/api/v1/devices/{id}`, [`id`]).
fn template(uri: &str) -> (String, Vec<String>) {
    let path = uri.split('?').next().unwrap_or(uri);
    let mut names = Vec::new();
    let segs: Vec<String> = path
        .split('/')
        .map(|s| match s.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            Some(n) => {
                names.push(n.to_string());
                format!("{{{n}}}")
            }
            None => s.to_string(),
        })
        .collect();
    (segs.join("/"), names)
}

/// The document for the given routes.
pub fn build<'a>(routes: impl Iterator<Item = &'a Route>) -> OpenApiDoc {
    let mut doc = serde_json::to_value(Components::openapi()).unwrap_or_else(|_| json!({}));
    let mut paths = Map::new();
    for r in routes {
        let uri = r.uri.to_string();
        if !uri.starts_with("/api/v1/") || r.method == rocket::http::Method::Options {
            continue;
        }
        let (path, names) = template(&uri);
        let method = r.method.as_str();
        let spec = OPS.iter().find(|(m, p, ..)| *m == method && *p == path);
        let tag = path
            .trim_start_matches("/api/v1/")
            .split('/')
            .next()
            .unwrap_or("api")
            .to_string();
        let mut params: Vec<Value> = names.iter().map(|n| path_param(n)).collect();
        for (_, name, ty, fmt) in QUERIES.iter().filter(|(p, ..)| *p == path) {
            let schema = match (*ty, fmt) {
                ("ref", Some(n)) => schema_ref(n),
                (t, Some(f)) => json!({ "type": t, "format": f }),
                (t, None) => json!({ "type": t }),
            };
            params.push(
                json!({ "name": name, "in": "query", "required": path.ends_with("upload-pcap"), "schema": schema }),
            );
        }
        if PAGED.contains(&path.as_str()) {
            params.push(json!({ "name": "page", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1_000_000 } }));
            params.push(
                json!({ "name": "size", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200 } }),
            );
        }
        let (status, response) = match spec {
            Some((.., s, resp)) => (*s, resp.map(schema_ref)),
            None => (200, None),
        };
        let mut ok = json!({ "description": "success" });
        if let Some(s) = response {
            ok["content"] = json!({ "application/json": { "schema": s } });
        }
        let mut op = json!({
            "tags": [tag],
            "operationId": format!("{}_{}", method.to_lowercase(), path.trim_start_matches("/api/v1/").replace(['/', '{', '}', '-'], "_")),
            "parameters": params,
            "responses": {
                status.to_string(): ok,
                "default": { "description": "error", "content": { "application/json": { "schema": schema_ref("ErrorBody") } } }
            }
        });
        if path.starts_with("/api/v1/devices/") && (path.ends_with("/start") || path.ends_with("/stop"))
            || path.ends_with("upload-pcap")
        {
            op["description"] = json!("Carried out by the device's agent: answered 202 with the command, which the hub delivers when the agent is online (follow it at `/api/v1/commands/{id}`); 409 `no_agent` if no agent watches the device.");
        } else if path.starts_with("/api/v1/attacks/sessions/") {
            if path.ends_with("/start") {
                op["description"] = json!("Sends the session to the agent that watches its device, which runs the steps in order: 202 with the command; 409 if the session is running or completed, or the agent is not online. Progress on `/ws/attacks/{id}`.");
            } else if path.ends_with("/stop") {
                op["description"] = json!("Asks the agent to abort the running session (the current step ends as aborted, later steps are skipped): 202 with the command; 409 if the session is not running.");
            }
        } else if path == "/api/v1/fl/start" {
            op["description"] = json!("Starts a federated-learning run (one at a time): a key committee of online agents makes the collective CKKS key, then each round selected agents train locally and upload encrypted updates that the hub adds and the committee decrypts only as a sum. 409 if a run is in progress or the hub has no embedded fleet link. Progress on `/ws/fl`.");
        }
        if let Some((_, _, Some(body), ..)) = spec {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": schema_ref(body) } } });
        } else if path.ends_with("upload-pcap") {
            op["requestBody"] = json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
        } else if path.ends_with("/model/upload") {
            let file = json!({ "type": "string", "format": "binary" });
            op["requestBody"] = json!({ "required": true, "content": { "multipart/form-data": { "schema": {
                "type": "object",
                "required": ["model", "scaler", "metadata"],
                "properties": {
                    "model": file, "scaler": file, "metadata": file,
                    "version": { "type": "string" }, "activate": { "type": "boolean" }
                }
            } } } });
        }
        if !(path.ends_with("/auth/login") || path.ends_with("/auth/refresh") || path.ends_with("/agents/enroll")) {
            op["security"] = json!([{ "bearer": [] }]);
        }
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = op;
    }
    doc["paths"] = Value::Object(paths);
    doc["servers"] = json!([{ "url": "/" }]);
    if let Some(c) = doc.get_mut("components").and_then(Value::as_object_mut) {
        c.insert(
            "securitySchemes".into(),
            json!({ "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } }),
        );
    }
    OpenApiDoc(serde_json::to_string(&doc).unwrap_or_default())
}

/// The serialised document, built once at start.
#[derive(Debug)]
pub struct OpenApiDoc(pub String);

pub fn routes() -> Vec<Route> {
    rocket::routes![openapi_json]
}

#[rocket::get("/api/v1/openapi.json")]
fn openapi_json(doc: &State<OpenApiDoc>) -> (ContentType, String) {
    (ContentType::JSON, doc.0.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_name_params() {
        assert_eq!(
            super::template("/api/v1/traffic/<device_id>/export?<q..>"),
            (
                "/api/v1/traffic/{device_id}/export".to_string(),
                vec!["device_id".to_string()]
            )
        );
    }
}
