//! `/settings`: typed system settings stored as JSONB, model upload, and a connectivity check.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::Text;
use rocket::data::Capped;
use rocket::form::{Errors, Form};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::db::models::Setting;
use crate::db::schema::system_settings;
use crate::error::{ApiError, ApiResult};
use crate::model::{ModelError, ModelFiles};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, update, upload_model, test_connection, models]
}

pub const DEFAULT_MODEL: &str = "cnn_lstm_default";

/// Known settings, their defaults and checks. Unknown keys are refused so typos do not pile up.
fn check(key: &str, v: &Value) -> Option<Result<(), &'static str>> {
    let ok = |b: bool, msg| Some(if b { Ok(()) } else { Err(msg) });
    match key {
        "global_threshold" => ok(
            v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)),
            "a number between 0 and 1",
        ),
        "active_model" => ok(
            v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 100),
            "a model name (1-100 characters)",
        ),
        "enforcement_enabled" => ok(v.is_boolean(), "true or false"),
        "retention_days" => ok(
            v.as_i64().is_some_and(|d| (1..=3650).contains(&d)),
            "a whole number of days 1-3650",
        ),
        "alert_min_severity" => ok(
            v.as_str()
                .is_some_and(|s| ["low", "medium", "high", "critical"].contains(&s)),
            "low, medium, high or critical",
        ),
        "window_size" => ok(
            v.as_i64().is_some_and(|d| (1..=100).contains(&d)),
            "a whole number 1-100",
        ),
        _ => None,
    }
}

fn defaults() -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        ("global_threshold", Value::from(0.5)),
        ("active_model", Value::from(DEFAULT_MODEL)),
        ("enforcement_enabled", Value::from(false)),
        ("retention_days", Value::from(30)),
        ("alert_min_severity", Value::from("medium")),
        ("window_size", Value::from(10)),
    ])
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingOut {
    pub key: String,
    #[schema(value_type = Object)]
    pub value: Value,
    pub updated_at: Option<chrono::DateTime<Utc>>,
    pub updated_by: Option<uuid::Uuid>,
    pub is_default: bool,
}

#[rocket::get("/settings")]
pub async fn list(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Vec<SettingOut>>> {
    let stored: Vec<Setting> = app
        .db
        .run(|c| Ok(system_settings::table.select(Setting::as_select()).load(c)?))
        .await?;
    let mut out: BTreeMap<String, SettingOut> = defaults()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                SettingOut {
                    key: k.into(),
                    value: v,
                    updated_at: None,
                    updated_by: None,
                    is_default: true,
                },
            )
        })
        .collect();
    for s in stored {
        out.insert(
            s.key.clone(),
            SettingOut {
                key: s.key,
                value: s.value,
                updated_at: Some(s.updated_at),
                updated_by: s.updated_by,
                is_default: false,
            },
        );
    }
    Ok(Json(out.into_values().collect()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingIn {
    #[schema(value_type = Object)]
    pub value: Value,
}

#[rocket::put("/settings/<key>", data = "<body>")]
pub async fn update(a: Auth<Admin>, app: &State<App>, key: &str, body: Body<SettingIn>) -> ApiResult<Json<SettingOut>> {
    let value = body.0.value;
    match check(key, &value) {
        None => return Err(ApiError::not_found(&format!("setting `{key}`"))),
        Some(Err(expected)) => return Err(ApiError::field("value", format!("`{key}` takes {expected}"))),
        Some(Ok(())) => {}
    }
    if key == "active_model" {
        let name = value.as_str().unwrap_or_default().to_string();
        activate(app, name).await?;
    }
    let user = a.user_id();
    let s = store(app, key, value, user).await?;
    tracing::info!(key = %s.key, user = %user, "setting updated");
    Ok(Json(SettingOut {
        key: s.key,
        value: s.value,
        updated_at: Some(s.updated_at),
        updated_by: s.updated_by,
        is_default: false,
    }))
}

async fn store(app: &App, key: &str, value: Value, user: uuid::Uuid) -> ApiResult<Setting> {
    let (key, now) = (key.to_string(), Utc::now());
    app.db
        .run(move |c| {
            Ok(diesel::insert_into(system_settings::table)
                .values((
                    system_settings::key.eq(&key),
                    system_settings::value.eq(&value),
                    system_settings::updated_at.eq(now),
                    system_settings::updated_by.eq(user),
                ))
                .on_conflict(system_settings::key)
                .do_update()
                .set((
                    system_settings::value.eq(&value),
                    system_settings::updated_at.eq(now),
                    system_settings::updated_by.eq(user),
                ))
                .returning(Setting::as_returning())
                .get_result(c)?)
        })
        .await
}

/// Loads a stored model and makes it the one `/predict` uses.
async fn activate(app: &App, name: String) -> ApiResult<()> {
    let models = app.models.clone();
    let loaded = rocket::tokio::task::spawn_blocking(move || models.activate(&name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match loaded {
        Ok(_) => Ok(()),
        Err(e @ ModelError::Unknown(_)) => Err(ApiError::field("value", e.to_string())),
        Err(e) => Err(ApiError::field("value", format!("the model does not load: {e}"))),
    }
}

/// A model as three files in a `multipart/form-data` upload.
#[derive(Debug, rocket::FromForm)]
pub struct ModelUpload<'r> {
    /// The ONNX graph (`model.onnx`).
    pub model: Capped<&'r [u8]>,
    /// The feature scaler (`scaler.json`).
    pub scaler: Capped<&'r [u8]>,
    /// `metadata.json`: format, version, architecture hash, families, threshold.
    pub metadata: Capped<&'r [u8]>,
    /// Store under this version instead of the one in the metadata.
    pub version: Option<String>,
    /// Make it the active model right away (default true).
    pub activate: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelUploaded {
    pub model_version: String,
    pub arch_hash: String,
    pub families: Vec<String>,
    pub threshold: f32,
    pub active: bool,
}

/// Stores a model after checking that tract loads it and scores a 10×78 window with it; 422
/// names the part at fault, 409 if the version exists.
#[rocket::post("/settings/model/upload", data = "<form>")]
pub async fn upload_model(
    a: Auth<Admin>,
    app: &State<App>,
    form: Result<Form<ModelUpload<'_>>, Errors<'_>>,
) -> ApiResult<(Status, Json<ModelUploaded>)> {
    let form = match form {
        Ok(f) => f.into_inner(),
        Err(e) if e.iter().any(|e| e.status() == Status::PayloadTooLarge) => {
            return Err(ApiError::new(
                Status::PayloadTooLarge,
                "payload_too_large",
                format!(
                    "upload is larger than {} bytes (max_upload_bytes)",
                    app.config.max_upload_bytes
                ),
            ))
        }
        Err(e) => return Err(super::form_errors(&e)),
    };
    for (field, part) in [
        ("model", &form.model),
        ("scaler", &form.scaler),
        ("metadata", &form.metadata),
    ] {
        if !part.is_complete() {
            return Err(ApiError::new(
                Status::PayloadTooLarge,
                "payload_too_large",
                format!(
                    "{field} is larger than {} bytes (max_upload_bytes)",
                    app.config.max_upload_bytes
                ),
            ));
        }
    }
    let (onnx, scaler, metadata) = (form.model.to_vec(), form.scaler.to_vec(), form.metadata.to_vec());
    let version = form.version.clone();
    let models = app.models.clone();
    let installed = rocket::tokio::task::spawn_blocking(move || {
        let files = ModelFiles {
            onnx: &onnx,
            scaler: &scaler,
            metadata: &metadata,
        };
        // Model files are untrusted input: a graph that panics tract is a bad upload, not a crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            models.install(&files, version.as_deref())
        }))
        .unwrap_or_else(|_| {
            Err(ModelError::Invalid {
                field: "model",
                reason: "tract failed on this graph".into(),
            })
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let metadata = match installed {
        Ok(m) => m,
        Err(ModelError::Invalid { field, reason }) => return Err(ApiError::field(field, reason)),
        Err(e @ ModelError::Exists(_)) => return Err(ApiError::conflict(e.to_string())),
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    let active = form.activate.unwrap_or(true);
    if active {
        activate(app, metadata.model_version.clone()).await?;
        store(
            app,
            "active_model",
            Value::from(metadata.model_version.clone()),
            a.user_id(),
        )
        .await?;
    }
    tracing::info!(version = %metadata.model_version, active, user = %a.user_id(), "model uploaded");
    Ok((
        Status::Created,
        Json(ModelUploaded {
            model_version: metadata.model_version,
            arch_hash: metadata.arch_hash,
            families: metadata.families,
            threshold: metadata.threshold,
            active,
        }),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionReport {
    pub database: &'static str,
    pub database_latency_ms: f64,
    pub server_version: String,
    pub websocket_clients: usize,
    pub websocket_events_dropped: u64,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    v: String,
}

#[rocket::post("/settings/test-connection")]
pub async fn test_connection(_a: Auth<Admin>, app: &State<App>) -> ApiResult<Json<ConnectionReport>> {
    let start = Instant::now();
    let v: Version = app
        .db
        .run(|c| Ok(diesel::sql_query("SELECT current_setting('server_version') AS v").get_result(c)?))
        .await?;
    Ok(Json(ConnectionReport {
        database: "ok",
        database_latency_ms: start.elapsed().as_secs_f64() * 1000.0,
        server_version: v.v,
        websocket_clients: app.events.subscribers(),
        websocket_events_dropped: app.events.dropped_total(),
    }))
}

/// Every model the hub holds (bundled, uploaded, federated), which is active; activate one
/// with `PUT /settings/active_model`.
#[rocket::get("/settings/models")]
pub async fn models(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Vec<crate::model::StoredModel>>> {
    let store = app.models.clone();
    let list = rocket::tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(list))
}
