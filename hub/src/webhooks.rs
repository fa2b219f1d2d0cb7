//! `webhook` prevention rules, carried out by the hub (agents enforce the others): when an
//! alert is raised for a device, every enabled webhook rule that covers the device (global or
//! its own) whose threshold the alert's prediction reaches, and that has not fired for the
//! device within its cooldown, POSTs the alert as JSON to its URL. Each call and its outcome
//! go to the prevention log and out as a `prevention` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::broker::run;
use crate::db::models::{Alert, PreventionLog, PreventionRule};
use crate::db::schema::{predictions, prevention_logs, prevention_rules};
use crate::db::Db;
use crate::ws::{Broadcaster, Topic};

/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client (made at the first call: it loads the system's CA certificates, memory a
/// hub without webhook rules need not spend) and when each (rule, device) last fired.
#[derive(Debug, Default)]
pub struct Webhooks {
    http: OnceLock<reqwest::Client>,
    fired: Mutex<HashMap<(Uuid, Uuid), Instant>>,
}

/// What a receiver gets.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    event: &'static str,
    rule_id: Uuid,
    rule_name: &'a str,
    /// The score of the prediction that raised the alert.
    score: f64,
    alert: &'a Alert,
}

impl Webhooks {
    /// Calls the webhooks these freshly stored alerts set off (in a task of its own: a slow
    /// receiver holds up nothing else).
    pub fn on_alerts(self: &Arc<Self>, db: &Db, events: &Arc<Broadcaster>, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let (hooks, db, events, alerts) = (self.clone(), db.clone(), events.clone(), alerts.to_vec());
        tokio::spawn(async move {
            if let Err(e) = hooks.fire(&db, &events, alerts).await {
                tracing::warn!(error = %e, "webhooks: could not look up or log the rules");
            }
        });
    }

    async fn fire(&self, db: &Db, events: &Broadcaster, alerts: Vec<Alert>) -> Result<(), String> {
        let prediction_ids: Vec<Uuid> = alerts.iter().filter_map(|a| a.prediction_id).collect();
        let (rules, scores) = run(db, move |c| {
            let rules: Vec<PreventionRule> = prevention_rules::table
                .filter(prevention_rules::is_enabled.eq(true))
                .filter(prevention_rules::action_type.eq("webhook"))
                .select(PreventionRule::as_select())
                .load(c)?;
            let scores: HashMap<Uuid, f64> = if rules.is_empty() {
                HashMap::new()
            } else {
                predictions::table
                    .filter(predictions::id.eq_any(&prediction_ids))
                    .select((predictions::id, predictions::score))
                    .load::<(Uuid, f64)>(c)?
                    .into_iter()
                    .collect()
            };
            Ok((rules, scores))
        })
        .await?;
        for alert in &alerts {
            // An alert without a prediction was raised on purpose: it reaches any threshold.
            let score = alert.prediction_id.and_then(|p| scores.get(&p).copied()).unwrap_or(1.0);
            for rule in &rules {
                let Some(url) = rule.webhook_url.as_deref() else {
                    continue;
                };
                if rule.device_id.is_some_and(|d| d != alert.device_id) || score < rule.threshold {
                    continue;
                }
                if !self.due(rule, alert.device_id) {
                    continue;
                }
                let payload = Payload {
                    event: "alert",
                    rule_id: rule.id,
                    rule_name: &rule.rule_name,
                    score,
                    alert,
                };
                let (success, outcome) = match self.client().post(url).json(&payload).send().await {
                    Ok(r) => (
                        r.status().is_success(),
                        serde_json::json!({"status": r.status().as_u16()}),
                    ),
                    Err(e) => (false, serde_json::json!({"error": e.to_string()})),
                };
                tracing::info!(rule = %rule.rule_name, %url, success, "webhook called");
                let mut details = serde_json::json!({"url": url, "alert_id": alert.id});
                if let (Some(d), Some(o)) = (details.as_object_mut(), outcome.as_object()) {
                    d.extend(o.clone());
                }
                let log = PreventionLog {
                    id: Uuid::now_v7(),
                    rule_id: Some(rule.id),
                    device_id: alert.device_id,
                    prediction_id: alert.prediction_id,
                    action_executed: "webhook".into(),
                    success,
                    details: Some(details),
                    ts: Utc::now(),
                };
                let stored = run(db, move |c| {
                    diesel::insert_into(prevention_logs::table)
                        .values(&log)
                        .returning(PreventionLog::as_returning())
                        .get_result(c)
                })
                .await?;
                events.publish("prevention", &stored, &[Topic::Live, Topic::Device(stored.device_id)]);
            }
        }
        Ok(())
    }

    fn client(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("gatewatch-hub/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
    }

    /// True (and the cooldown starts) if the rule may fire for the device now.
    fn due(&self, rule: &PreventionRule, device: Uuid) -> bool {
        let Ok(mut fired) = self.fired.lock() else { return false };
        let cooldown = Duration::from_secs(u64::try_from(rule.cooldown_seconds).unwrap_or(0));
        let now = Instant::now();
        match fired.get(&(rule.id, device)) {
            Some(last) if now.duration_since(*last) < cooldown => false,
            _ => {
                fired.insert((rule.id, device), now);
                true
            }
        }
    }
}
