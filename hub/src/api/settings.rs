//! `/settings`: typed system settings stored as JSONB, and a connectivity check.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::Text;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::db::models::Setting;
use crate::db::schema::system_settings;
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, update, test_connection]
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
    let (key, user, now) = (key.to_string(), a.user_id(), Utc::now());
    let s = app
        .db
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
        .await?;
    tracing::info!(key = %s.key, user = %user, "setting updated");
    Ok(Json(SettingOut {
        key: s.key,
        value: s.value,
        updated_at: Some(s.updated_at),
        updated_by: s.updated_by,
        is_default: false,
    }))
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
