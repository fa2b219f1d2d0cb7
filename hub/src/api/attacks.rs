//! `/attacks`: attack types, sessions with their steps, start and stop (the device's agent
//! runs the session, see `crate::attack`), reports as HTML or PDF.

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
        AttackType::SlowRate => ("Slow-rate DoS", "Slowloris-style connections held open", &["slowloris"]),
        AttackType::PortScan => ("Port scan", "Probing of many ports", &["syn_scan"]),
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
    /// The agent expected to run it: refused if another agent watches the device.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    pub steps: Vec<StepIn>,
    /// Seconds of the device's own traffic alone between two steps (default 10).
    #[serde(default = "default_gap")]
    pub gap_seconds: u32,
}

fn default_gap() -> u32 {
    10
}

/// Most steps in one session.
pub const MAX_STEPS: usize = 20;
/// Longest session, steps and gaps together.
pub const MAX_SESSION_SECS: i64 = 6 * 3600;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionOut {
    #[serde(flatten)]
    pub session: AttackSession,
    pub steps: Vec<AttackStep>,
}

fn validate(s: &SessionIn) -> ApiResult<()> {
    if s.steps.is_empty() || s.steps.len() > MAX_STEPS {
        return Err(ApiError::field("steps", format!("1-{MAX_STEPS} steps")));
    }
    if s.gap_seconds > 3600 {
        return Err(ApiError::field("gap_seconds", "0-3600 seconds"));
    }
    let total: i64 = s.steps.iter().map(|st| i64::from(st.duration_seconds)).sum::<i64>()
        + i64::from(s.gap_seconds) * (s.steps.len() as i64 - 1);
    if total > MAX_SESSION_SECS {
        return Err(ApiError::field(
            "steps",
            format!("the session would last {total} s with its gaps; at most {MAX_SESSION_SECS} s"),
        ));
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
        if let Some(v) = &st.variant {
            let (_, _, known) = describe(st.attack_type);
            if !known.contains(&v.as_str()) {
                let allowed = if known.is_empty() {
                    "none for this attack type".to_string()
                } else {
                    format!("one of {}", known.join(", "))
                };
                return Err(ApiError::field(format!("steps[{i}].variant"), allowed));
            }
        }
        match (st.adversarial_enabled, st.adversarial_epsilon) {
            (false, Some(_)) => {
                return Err(ApiError::field(
                    format!("steps[{i}].adversarial_epsilon"),
                    "only with adversarial_enabled: true",
                ))
            }
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
    let device = super::devices::load_device(app, s.device_id)
        .await
        .map_err(|_| ApiError::field("device_id", "no such device"))?;
    if let Some(wanted) = s.agent_id {
        if device.agent_id != Some(wanted) {
            let watched = device.agent_id.map_or("no agent".to_string(), |a| format!("agent {a}"));
            return Err(ApiError::field(
                "agent_id",
                format!("the device is watched by {watched}, not by agent {wanted}"),
            ));
        }
    }
    if !device.ip_address.ip().is_ipv4() {
        return Err(ApiError::field(
            "device_id",
            "the device has an IPv6 address; the packet simulator makes IPv4 traffic only",
        ));
    }
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
        model_version: None,
        message: None,
        command_id: None,
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
            windows: None,
            attack_windows: None,
            detection_rate: None,
            clean_detection_rate: None,
            avg_score: None,
            family_accuracy: None,
            message: None,
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

/// A session that was started: the command its agent runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Started {
    #[serde(flatten)]
    pub session: SessionOut,
    pub command: super::commands::AgentCommand,
}

fn conflict(code: &'static str, message: String) -> ApiError {
    let mut e = ApiError::new(Status::Conflict, code, message);
    e.fields.clear();
    e
}

/// The device's agent if it is online, or 409 saying why not.
async fn online_agent(app: &App, device: &crate::db::models::DeviceRow) -> ApiResult<Uuid> {
    let agent = super::commands::agent_of(device)?;
    let state = app
        .db
        .run(move |c| {
            use crate::db::schema::agents;
            Ok(agents::table
                .find(agent)
                .select((agents::status, agents::revoked_at.is_not_null()))
                .first::<(String, bool)>(c)
                .optional()?)
        })
        .await?;
    match state {
        Some((status, false)) if status == "online" => Ok(agent),
        Some((_, true)) => Err(conflict("agent_revoked", format!("agent {agent} is revoked"))),
        _ => Err(conflict(
            "agent_offline",
            format!("agent {agent}, which watches the device, is offline; start the session once it is online"),
        )),
    }
}

/// Sends the session to the agent that watches its device: 202 with the command; 409 if the
/// session is running or completed, or the agent is not online.
#[rocket::post("/attacks/sessions/<id>/start")]
pub async fn start(a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<(Status, Json<Started>)> {
    let s = load(app, id).await?;
    if matches!(s.session.status.as_str(), "running" | "completed") {
        return Err(conflict(
            "session_state",
            format!(
                "the session is {}; create a new session to test again",
                s.session.status
            ),
        ));
    }
    let device = super::devices::load_device(app, s.session.device_id).await?;
    let agent = online_agent(app, &device).await?;
    let gap = s.session.pipeline_config["gap_seconds"].as_u64().unwrap_or(10);
    let steps: Vec<gatewatch_proto::fleet::AttackStepSpec> = s
        .steps
        .iter()
        .map(|st| gatewatch_proto::fleet::AttackStepSpec {
            order: st.step_order.max(0) as u32,
            attack_type: st.attack_type.clone(),
            variant: st.variant.clone(),
            duration_secs: st.duration_seconds.max(1) as u32,
            intensity: st.intensity,
            adversarial_epsilon: st.adversarial_epsilon.filter(|_| st.adversarial_enabled),
        })
        .collect();
    let payload = serde_json::json!({
        "session_id": id,
        "ip": device.ip_address.ip(),
        "steps": steps,
        "gap_secs": gap,
    });
    let (user, device_id) = (a.user_id(), device.id);
    let command = app
        .db
        .run(move |c| {
            c.transaction(|c| {
                // Only one start wins: the row is claimed while it is startable.
                let claimed = diesel::update(
                    attack_sessions::table
                        .find(id)
                        .filter(attack_sessions::status.ne_all(["running", "completed"])),
                )
                .set((
                    attack_sessions::status.eq("running"),
                    attack_sessions::progress_pct.eq(0.0),
                    attack_sessions::current_step.eq(None::<i32>),
                    attack_sessions::results.eq(None::<serde_json::Value>),
                    attack_sessions::started_at.eq(Some(Utc::now())),
                    attack_sessions::completed_at.eq(None::<chrono::DateTime<Utc>>),
                    attack_sessions::message.eq(None::<String>),
                ))
                .execute(c)?;
                if claimed == 0 {
                    return Err(conflict("session_state", "the session was started meanwhile".into()));
                }
                diesel::update(attack_steps::table.filter(attack_steps::session_id.eq(id)))
                    .set((
                        attack_steps::status.eq("pending"),
                        attack_steps::detected.eq(None::<bool>),
                        attack_steps::avg_confidence.eq(None::<f64>),
                        attack_steps::detection_latency_ms.eq(None::<f64>),
                        attack_steps::auto_action_taken.eq(None::<String>),
                        attack_steps::started_at.eq(None::<chrono::DateTime<Utc>>),
                        attack_steps::completed_at.eq(None::<chrono::DateTime<Utc>>),
                        attack_steps::windows.eq(None::<i32>),
                        attack_steps::attack_windows.eq(None::<i32>),
                        attack_steps::detection_rate.eq(None::<f64>),
                        attack_steps::clean_detection_rate.eq(None::<f64>),
                        attack_steps::avg_score.eq(None::<f64>),
                        attack_steps::family_accuracy.eq(None::<f64>),
                        attack_steps::message.eq(None::<String>),
                    ))
                    .execute(c)?;
                let row: crate::db::models::CommandRow = diesel::insert_into(crate::db::schema::agent_commands::table)
                    .values(crate::db::models::NewCommand {
                        id: Uuid::new_v4(),
                        agent_id: Some(agent),
                        device_id: Some(device_id),
                        command: "attack.start".into(),
                        payload,
                        requested_by: Some(user),
                    })
                    .returning(crate::db::models::CommandRow::as_returning())
                    .get_result(c)?;
                diesel::update(attack_sessions::table.find(id))
                    .set(attack_sessions::command_id.eq(Some(row.id)))
                    .execute(c)?;
                Ok(row)
            })
        })
        .await?;
    tracing::info!(session = %id, %agent, command = %command.id, "attack session sent to its agent");
    app.commands.notify_one();
    crate::attack::publish(
        &app.events,
        &crate::attack::Progress::new(id, device_id, "session_queued", "running"),
    );
    Ok((
        Status::Accepted,
        Json(Started {
            session: load(app, id).await?,
            command: command.into(),
        }),
    ))
}

/// Asks the agent to abort the running session: 202 with the command; 409 if it is not running.
#[rocket::post("/attacks/sessions/<id>/stop")]
pub async fn stop(
    a: Auth<Operator>,
    app: &State<App>,
    id: Uuid,
) -> ApiResult<(Status, Json<super::commands::AgentCommand>)> {
    let s = load(app, id).await?;
    if s.session.status != "running" {
        return Err(conflict(
            "session_state",
            format!("the session is {}, not running", s.session.status),
        ));
    }
    let device = super::devices::load_device(app, s.session.device_id).await?;
    let payload = serde_json::json!({ "session_id": id });
    super::commands::send_to_device(app, &device, "attack.stop", payload, a.user_id()).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Html,
    Pdf,
}

/// The session's report: `format=html` (default) or `pdf`.
#[rocket::get("/attacks/sessions/<id>/report?<format>")]
pub async fn report(
    _a: Auth<Viewer>,
    app: &State<App>,
    id: Uuid,
    format: Option<&str>,
) -> ApiResult<(ContentType, Vec<u8>)> {
    let format = match format {
        None | Some("html") => ReportFormat::Html,
        Some("pdf") => ReportFormat::Pdf,
        Some(_) => return Err(ApiError::field("format", "html or pdf")),
    };
    let data = app
        .db
        .run(move |c| crate::attack::report::load(c, id)?.ok_or_else(|| ApiError::not_found("attack session")))
        .await?;
    match format {
        ReportFormat::Html => {
            let html = crate::attack::report::html(&data).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok((ContentType::HTML, html.into_bytes()))
        }
        ReportFormat::Pdf => {
            let pdf = tokio::task::spawn_blocking(move || crate::attack::report::pdf(&data))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok((ContentType::PDF, pdf))
        }
    }
}
