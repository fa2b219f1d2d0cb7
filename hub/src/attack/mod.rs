//! Attack-simulation sessions at the hub: what an agent reports of a running session
//! becomes the rows of `attack_sessions` and `attack_steps` (and live events), a session whose
//! agent goes away ends as failed, and [`report`] renders a session as HTML or PDF.
//!
//! The agent runs the session (see the agent's `attack` module); the hub sends it with the
//! `attack.start` command and believes only reports about sessions of the reporting agent's
//! own devices that are still running.

pub mod report;

use chrono::{DateTime, TimeZone, Utc};
use diesel::prelude::*;
use gatewatch_proto::fleet::{AttackEvent, AttackReport, RunStatus};
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{agent_commands, attack_sessions, attack_steps, devices};

/// What changed, for the live channels.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub session_id: Uuid,
    pub device_id: Uuid,
    /// `session_started`, `step_started`, `step_ended`, `session_ended`.
    pub event: &'static str,
    pub status: String,
    pub progress_pct: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Progress {
    /// An event about the session as a whole; step fields unset.
    pub fn new(session_id: Uuid, device_id: Uuid, event: &'static str, status: &str) -> Progress {
        Progress {
            session_id,
            device_id,
            event,
            status: status.into(),
            progress_pct: 0.0,
            step: None,
            step_status: None,
            detection_rate: None,
            message: None,
        }
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_else(Utc::now)
}

fn clip(s: Option<String>) -> Option<String> {
    s.map(|m| m.chars().take(2000).collect())
}

/// Share of the session's steps that have ended, in percent.
fn progress(c: &mut PgConnection, session: Uuid) -> QueryResult<f64> {
    let statuses: Vec<String> = attack_steps::table
        .filter(attack_steps::session_id.eq(session))
        .select(attack_steps::status)
        .load(c)?;
    let ended = statuses
        .iter()
        .filter(|s| !matches!(s.as_str(), "pending" | "running"))
        .count();
    Ok(if statuses.is_empty() {
        0.0
    } else {
        100.0 * ended as f64 / statuses.len() as f64
    })
}

/// Applies an agent's report about one of its sessions; `None` when the report is about a
/// session that is not running on one of this agent's devices (it changes nothing).
pub fn record(c: &mut PgConnection, agent: Uuid, r: &AttackReport) -> QueryResult<Option<Progress>> {
    c.transaction(|c| {
        let owned: Option<(Uuid, String)> = attack_sessions::table
            .inner_join(devices::table)
            .filter(attack_sessions::id.eq(r.session_id))
            .filter(devices::agent_id.eq(agent))
            .select((attack_sessions::device_id, attack_sessions::status))
            .for_update()
            .first(c)
            .optional()?;
        let Some((device_id, status)) = owned else {
            return Ok(None);
        };
        if status != "running" {
            return Ok(None);
        }
        let session = r.session_id;
        let when = at(r.at_ms);
        let mut out = Progress::new(session, device_id, "", "running");
        match &r.event {
            AttackEvent::SessionStarted { model_version } => {
                diesel::update(attack_sessions::table.find(session))
                    .set(attack_sessions::model_version.eq(Some(model_version.chars().take(100).collect::<String>())))
                    .execute(c)?;
                out.event = "session_started";
            }
            AttackEvent::StepStarted { order } => {
                let order = i32::try_from(*order).unwrap_or(i32::MAX);
                diesel::update(
                    attack_steps::table
                        .filter(attack_steps::session_id.eq(session))
                        .filter(attack_steps::step_order.eq(order)),
                )
                .set((
                    attack_steps::status.eq("running"),
                    attack_steps::started_at.eq(Some(when)),
                ))
                .execute(c)?;
                diesel::update(attack_sessions::table.find(session))
                    .set(attack_sessions::current_step.eq(Some(order)))
                    .execute(c)?;
                out.event = "step_started";
                out.step = Some(order);
                out.step_status = Some("running".into());
            }
            AttackEvent::StepEnded {
                order,
                status,
                metrics: m,
                message,
            } => {
                let order = i32::try_from(*order).unwrap_or(i32::MAX);
                let unit = |v: f64| v.is_finite().then_some(v.clamp(0.0, 1.0));
                let count = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
                diesel::update(
                    attack_steps::table
                        .filter(attack_steps::session_id.eq(session))
                        .filter(attack_steps::step_order.eq(order)),
                )
                .set((
                    attack_steps::status.eq(status.as_str()),
                    attack_steps::completed_at.eq(Some(when)),
                    attack_steps::detected.eq(Some(m.attack_windows > 0)),
                    attack_steps::windows.eq(Some(count(m.windows))),
                    attack_steps::attack_windows.eq(Some(count(m.attack_windows))),
                    attack_steps::detection_rate.eq(unit(m.detection_rate)),
                    attack_steps::clean_detection_rate.eq(m.clean_detection_rate.and_then(unit)),
                    attack_steps::avg_confidence.eq(unit(m.avg_confidence)),
                    attack_steps::avg_score.eq(unit(m.avg_score)),
                    attack_steps::detection_latency_ms
                        .eq(m.detection_latency_ms.filter(|v| v.is_finite() && *v >= 0.0)),
                    attack_steps::family_accuracy.eq(m.family_accuracy.and_then(unit)),
                    attack_steps::auto_action_taken
                        .eq(m.prevention.clone().map(|p| p.chars().take(100).collect::<String>())),
                    attack_steps::message.eq(clip(message.clone())),
                ))
                .execute(c)?;
                out.event = "step_ended";
                out.step = Some(order);
                out.step_status = Some(status.as_str().into());
                out.detection_rate = unit(m.detection_rate);
                out.message = message.clone();
            }
            AttackEvent::SessionEnded { status, message } => {
                let status = match status {
                    RunStatus::Completed | RunStatus::Aborted | RunStatus::Failed => *status,
                    _ => RunStatus::Failed,
                };
                end(c, session, status, message.clone().unwrap_or_default(), when)?;
                out.event = "session_ended";
                out.status = status.as_str().into();
                out.message = message.clone();
            }
        }
        out.progress_pct = progress(c, session)?;
        diesel::update(attack_sessions::table.find(session))
            .set(attack_sessions::progress_pct.eq(out.progress_pct))
            .execute(c)?;
        Ok(Some(out))
    })
}

/// Ends a running session: steps that never ran are skipped, one still running takes the
/// session's fate, the aggregate results are written.
fn end(
    c: &mut PgConnection,
    session: Uuid,
    status: RunStatus,
    message: String,
    when: DateTime<Utc>,
) -> QueryResult<()> {
    let step_fate = match status {
        RunStatus::Aborted => "aborted",
        _ => "failed",
    };
    diesel::update(
        attack_steps::table
            .filter(attack_steps::session_id.eq(session))
            .filter(attack_steps::status.eq("running")),
    )
    .set((
        attack_steps::status.eq(step_fate),
        attack_steps::completed_at.eq(Some(when)),
        attack_steps::message.eq(Some(message.clone())),
    ))
    .execute(c)?;
    diesel::update(
        attack_steps::table
            .filter(attack_steps::session_id.eq(session))
            .filter(attack_steps::status.eq("pending")),
    )
    .set(attack_steps::status.eq("skipped"))
    .execute(c)?;
    let steps: Vec<crate::db::models::AttackStep> = attack_steps::table
        .filter(attack_steps::session_id.eq(session))
        .order(attack_steps::step_order.asc())
        .select(crate::db::models::AttackStep::as_select())
        .load(c)?;
    let results = results(&steps);
    diesel::update(attack_sessions::table.find(session))
        .set((
            attack_sessions::status.eq(status.as_str()),
            attack_sessions::completed_at.eq(Some(when)),
            attack_sessions::message.eq(Some(message.chars().take(2000).collect::<String>())),
            attack_sessions::results.eq(Some(results)),
        ))
        .execute(c)?;
    // The command that ran it is over too: never sent again to a returning agent.
    if let Some(Some(command)) = attack_sessions::table
        .find(session)
        .select(attack_sessions::command_id)
        .first::<Option<Uuid>>(c)
        .optional()?
    {
        diesel::update(
            agent_commands::table
                .find(command)
                .filter(agent_commands::status.eq_any(["pending", "delivered"])),
        )
        .set((
            agent_commands::status.eq(if status == RunStatus::Failed { "failed" } else { "done" }),
            agent_commands::result.eq(Some(message)),
            agent_commands::updated_at.eq(Utc::now()),
        ))
        .execute(c)?;
    }
    Ok(())
}

/// The session's aggregate figures, from its step rows.
pub fn results(steps: &[crate::db::models::AttackStep]) -> serde_json::Value {
    let sum = |f: &dyn Fn(&crate::db::models::AttackStep) -> Option<i32>| -> i64 {
        steps.iter().filter_map(f).map(i64::from).sum()
    };
    let rate = |flagged: i64, windows: i64| (windows > 0).then(|| flagged as f64 / windows as f64);
    let clean: Vec<&crate::db::models::AttackStep> = steps.iter().filter(|s| !s.adversarial_enabled).collect();
    let adversarial: Vec<&crate::db::models::AttackStep> = steps.iter().filter(|s| s.adversarial_enabled).collect();
    let pooled = |set: &[&crate::db::models::AttackStep]| {
        let w: i64 = set.iter().filter_map(|s| s.windows).map(i64::from).sum();
        let a: i64 = set.iter().filter_map(|s| s.attack_windows).map(i64::from).sum();
        rate(a, w)
    };
    // On adversarial steps the same windows unperturbed: what FGSM took away.
    let unperturbed = {
        let w: i64 = adversarial.iter().filter_map(|s| s.windows).map(i64::from).sum();
        let a: f64 = adversarial
            .iter()
            .filter_map(|s| Some(s.clean_detection_rate? * f64::from(s.windows?)))
            .sum();
        (w > 0).then(|| a / w as f64)
    };
    let latencies: Vec<f64> = steps.iter().filter_map(|s| s.detection_latency_ms).collect();
    let count = |st: &str| steps.iter().filter(|s| s.status == st).count();
    serde_json::json!({
        "steps": steps.len(),
        "completed_steps": count("completed"),
        "aborted_steps": count("aborted"),
        "failed_steps": count("failed"),
        "skipped_steps": count("skipped"),
        "detected_steps": steps.iter().filter(|s| s.detected == Some(true)).count(),
        "windows": sum(&|s| s.windows),
        "attack_windows": sum(&|s| s.attack_windows),
        "detection_rate": rate(sum(&|s| s.attack_windows), sum(&|s| s.windows)),
        "clean_steps_detection_rate": pooled(&clean),
        "adversarial_steps_detection_rate": pooled(&adversarial),
        "adversarial_steps_unperturbed_detection_rate": unperturbed,
        "mean_detection_latency_ms": (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64),
    })
}

/// Fails the running sessions on the devices of `agents` (gone offline, or back after a
/// restart that lost them); returns what changed.
pub fn fail_for_agents(c: &mut PgConnection, agents: &[Uuid], reason: &str) -> QueryResult<Vec<Progress>> {
    if agents.is_empty() {
        return Ok(Vec::new());
    }
    c.transaction(|c| {
        let running: Vec<(Uuid, Uuid)> = attack_sessions::table
            .inner_join(devices::table)
            .filter(devices::agent_id.eq_any(agents))
            .filter(attack_sessions::status.eq("running"))
            .select((attack_sessions::id, attack_sessions::device_id))
            .for_update()
            .load(c)?;
        let mut out = Vec::with_capacity(running.len());
        for (session, device_id) in running {
            end(c, session, RunStatus::Failed, reason.to_string(), Utc::now())?;
            let progress_pct = progress(c, session)?;
            tracing::info!(%session, %reason, "attack session failed");
            out.push(Progress {
                progress_pct,
                message: Some(reason.to_string()),
                ..Progress::new(session, device_id, "session_ended", "failed")
            });
        }
        Ok(out)
    })
}

/// Tells the session's and the live channels.
pub fn publish(events: &crate::ws::Broadcaster, p: &Progress) {
    use crate::ws::Topic;
    events.publish(
        "attack_progress",
        p,
        &[Topic::Attack(p.session_id), Topic::Live, Topic::Device(p.device_id)],
    );
}
