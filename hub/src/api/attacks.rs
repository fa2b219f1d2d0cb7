//! `/attacks`: attack types, sessions CRUD with their steps, start/stop intents, report.

use chrono::Utc;
use diesel::prelude::*;
use rocket::form::Errors;
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{query, AttackType, Opt, Page, PageQuery, SessionStatus};
use crate::auth::guard::{Auth, Body, Operator, Viewer};
use crate::db::models::{AttackSession, AttackStep};
use crate::db::schema::{attack_sessions, attack_steps};
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![types, create, list, get, delete, start, stop, report]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttackTypeInfo {
    pub attack_type: AttackType,
    pub name: &'static str,
    pub description: &'static str,
    pub variants: &'static [&'static str],
}

fn describe(t: AttackType) -> (&'static str, &'static str, &'static [&'static str]) {
    match t {
        AttackType::DdosFlood => (
            "DDoS flood",
            "High-rate flood against the device",
            &["syn_flood", "udp_flood", "http_flood"],
        ),
        AttackType::SlowRate => (
            "Slow-rate DoS",
            "Slowloris-style connections held open",
            &["slowloris", "slow_post"],
        ),
        AttackType::PortScan => (
            "Port scan",
            "Probing of many ports",
            &["syn_scan", "connect_scan", "udp_scan"],
        ),
        AttackType::BruteForceSsh => ("SSH brute force", "Repeated SSH login attempts", &[]),
        AttackType::BruteForceFtp => ("FTP brute force", "Repeated FTP login attempts", &[]),
        AttackType::BotnetBeacon => ("Botnet beacon", "Periodic command-and-control check-ins", &[]),
        AttackType::DataExfiltration => ("Data exfiltration", "Large outbound transfers", &[]),
        AttackType::WebXss => ("Web XSS", "Cross-site scripting payloads over HTTP", &[]),
        AttackType::WebSqli => ("Web SQL injection", "SQL injection payloads over HTTP", &[]),
        AttackType::Hybrid => ("Hybrid", "Several techniques interleaved", &[]),
    }
}

#[rocket::get("/attacks/types")]
pub fn types(_a: Auth<Viewer>) -> Json<Vec<AttackTypeInfo>> {
    Json(
        AttackType::ALL
            .iter()
            .map(|&t| {
                let (name, description, variants) = describe(t);
                AttackTypeInfo {
                    attack_type: t,
                    name,
                    description,
                    variants,
                }
            })
            .collect(),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    pub attack_type: AttackType,
    #[serde(default = "default_duration")]
    pub duration_seconds: i32,
    #[serde(default = "default_intensity")]
    pub intensity: f64,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub adversarial_enabled: bool,
    #[serde(default)]
    pub adversarial_epsilon: Option<f64>,
}

fn default_duration() -> i32 {
    30
}
fn default_intensity() -> f64 {
    0.7
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionIn {
    pub device_id: Uuid,
    pub steps: Vec<StepIn>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionOut {
    #[serde(flatten)]
    pub session: AttackSession,
    pub steps: Vec<AttackStep>,
}

fn validate(s: &SessionIn) -> ApiResult<()> {
    if s.steps.is_empty() || s.steps.len() > 50 {
        return Err(ApiError::field("steps", "1-50 steps"));
    }
    for (i, st) in s.steps.iter().enumerate() {
        if !(1..=86_400).contains(&st.duration_seconds) {
            return Err(ApiError::field(
                format!("steps[{i}].duration_seconds"),
                "1-86400 seconds",
            ));
        }
        if !(0.0..=1.0).contains(&st.intensity) {
            return Err(ApiError::field(format!("steps[{i}].intensity"), "between 0 and 1"));
        }
        if st.variant.as_ref().is_some_and(|v| v.is_empty() || v.len() > 50) {
            return Err(ApiError::field(format!("steps[{i}].variant"), "1-50 characters"));
        }
        match (st.adversarial_enabled, st.adversarial_epsilon) {
            (true, None) => {
                return Err(ApiError::field(
                    format!("steps[{i}].adversarial_epsilon"),
                    "required when adversarial_enabled",
                ))
            }
            (_, Some(e)) if !(e > 0.0 && e <= 1.0) => {
                return Err(ApiError::field(
                    format!("steps[{i}].adversarial_epsilon"),
                    "between 0 (exclusive) and 1",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

async fn load(app: &App, id: Uuid) -> ApiResult<SessionOut> {
    app.db
        .run(move |c| {
            let session = attack_sessions::table
                .find(id)
                .select(AttackSession::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("attack session"))?;
            let steps = attack_steps::table
                .filter(attack_steps::session_id.eq(id))
                .order(attack_steps::step_order.asc())
                .select(AttackStep::as_select())
                .load(c)?;
            Ok(SessionOut { session, steps })
        })
        .await
}

#[rocket::post("/attacks/sessions", data = "<body>")]
pub async fn create(
    a: Auth<Operator>,
    app: &State<App>,
    body: Body<SessionIn>,
) -> ApiResult<(Status, Json<SessionOut>)> {
    let s = body.0;
    validate(&s)?;
    super::devices::load_device(app, s.device_id)
        .await
        .map_err(|_| ApiError::field("device_id", "no such device"))?;
    let id = Uuid::new_v4();
    let config = serde_json::to_value(&s).map_err(|e| ApiError::internal(e.to_string()))?;
    let session = AttackSession {
        id,
        device_id: s.device_id,
        pipeline_config: config,
        status: "pending".into(),
        progress_pct: 0.0,
        current_step: None,
        results: None,
        started_at: None,
        completed_at: None,
        created_by: Some(a.user_id()),
        created_at: Utc::now(),
    };
    let steps: Vec<AttackStep> = s
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, st)| AttackStep {
            id: Uuid::new_v4(),
            session_id: id,
            step_order: i as i32 + 1,
            attack_type: st.attack_type.as_str().into(),
            duration_seconds: st.duration_seconds,
            intensity: st.intensity,
            variant: st.variant,
            adversarial_enabled: st.adversarial_enabled,
            adversarial_epsilon: st.adversarial_epsilon,
            status: "pending".into(),
            detected: None,
            avg_confidence: None,
            detection_latency_ms: None,
            auto_action_taken: None,
            started_at: None,
            completed_at: None,
        })
        .collect();
    app.db
        .run(move |c| {
            c.transaction(|c| {
                diesel::insert_into(attack_sessions::table)
                    .values(&session)
                    .execute(c)?;
                diesel::insert_into(attack_steps::table).values(&steps).execute(c)?;
                Ok(())
            })
        })
        .await?;
    Ok((Status::Created, Json(load(app, id).await?)))
}

#[derive(Debug, rocket::FromForm)]
pub struct SessionQuery {
    pub device_id: Opt<Uuid>,
    pub status: Opt<SessionStatus>,
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=200))]
    pub size: i64,
}

#[rocket::get("/attacks/sessions?<q..>")]
pub async fn list(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<SessionQuery, Errors<'_>>,
) -> ApiResult<Json<Page<AttackSession>>> {
    let q = query(q)?;
    let page = PageQuery {
        page: q.page,
        size: q.size,
    };
    let (device, status) = (q.device_id.0, q.status.0);
    let filter = move || {
        let mut f = attack_sessions::table.into_boxed();
        if let Some(d) = device {
            f = f.filter(attack_sessions::device_id.eq(d));
        }
        if let Some(s) = status {
            f = f.filter(attack_sessions::status.eq(s.as_str()));
        }
        f
    };
    let (items, total) = app
        .db
        .run(move |c| {
            let total = filter().count().get_result(c)?;
            let items = filter()
                .order((attack_sessions::created_at.desc(), attack_sessions::id.asc()))
                .limit(page.size)
                .offset(page.offset())
                .select(AttackSession::as_select())
                .load(c)?;
            Ok((items, total))
        })
        .await?;
    Ok(Json(page.page_of(items, total)))
}

#[rocket::get("/attacks/sessions/<id>")]
pub async fn get(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<SessionOut>> {
    Ok(Json(load(app, id).await?))
}

#[rocket::delete("/attacks/sessions/<id>")]
pub async fn delete(_a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<Status> {
    let s = load(app, id).await?;
    if s.session.status == "running" {
        return Err(ApiError::conflict("the session is running; stop it first"));
    }
    app.db
        .run(move |c| Ok(diesel::delete(attack_sessions::table.find(id)).execute(c)?))
        .await?;
    Ok(Status::NoContent)
}

async fn intent(a: &Auth<Operator>, app: &App, id: Uuid, command: &'static str) -> ApiResult<ApiError> {
    let s = load(app, id).await?;
    if command == "attack.start" && matches!(s.session.status.as_str(), "running" | "completed") {
        return Err(ApiError::conflict(format!("the session is {}", s.session.status)));
    }
    let device = super::devices::load_device(app, s.session.device_id).await?;
    let user = a.user_id();
    let payload = serde_json::json!({ "session_id": id });
    let cmd = app
        .db
        .run(move |c| super::record_intent(c, device.agent_id, Some(device.id), command, payload, user))
        .await?;
    Ok(super::no_agent("device", cmd))
}

#[rocket::post("/attacks/sessions/<id>/start")]
pub async fn start(a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<ApiError> {
    intent(&a, app, id, "attack.start").await
}

#[rocket::post("/attacks/sessions/<id>/stop")]
pub async fn stop(a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<ApiError> {
    intent(&a, app, id, "attack.stop").await
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML report of the session and its steps.
#[rocket::get("/attacks/sessions/<id>/report")]
pub async fn report(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<(ContentType, String)> {
    let s = load(app, id).await?;
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Attack session {id}</title></head><body>\
         <h1>Attack session {id}</h1><p>Device {}; status {}; progress {:.0}%; created {}</p>\
         <table border=\"1\"><tr><th>#</th><th>attack</th><th>variant</th><th>duration s</th><th>intensity</th>\
         <th>status</th><th>detected</th><th>avg confidence</th><th>detection latency ms</th></tr>",
        s.session.device_id,
        esc(&s.session.status),
        s.session.progress_pct,
        s.session.created_at.to_rfc3339()
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    for st in &s.steps {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            st.step_order,
            esc(&st.attack_type),
            esc(st.variant.as_deref().unwrap_or("—")),
            st.duration_seconds,
            st.intensity,
            esc(&st.status),
            opt(st.detected.map(|d| d.to_string())),
            opt(st.avg_confidence.map(|v| format!("{v:.3}"))),
            opt(st.detection_latency_ms.map(|v| format!("{v:.1}"))),
        ));
    }
    html.push_str("</table></body></html>");
    Ok((ContentType::HTML, html))
}
