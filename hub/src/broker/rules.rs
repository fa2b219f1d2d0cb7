//! Prevention rules go to the agents that evaluate them: each agent gets the whole set that
//! concerns it (global rules and rules of its own devices, enabled, not `webhook`) when it
//! comes online and whenever an operator changes a rule. Sending the whole set keeps it
//! simple to get right: no change is lost between two versions, a repeat changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use diesel::prelude::*;
use gatewatch_proto::fleet::{Action, Rule, RuleAction};
use ipnetwork::IpNetwork;
use rumqttc::AsyncClient;
use uuid::Uuid;

use crate::db::models::PreventionRule;
use crate::db::schema::{agents, devices, prevention_rules};
use crate::db::Db;

/// How long a measure lasts unless the rule's `extra_config.duration_seconds` says otherwise.
pub const DEFAULT_DURATION_SECS: u32 = 600;
/// Packets per second a rate-limited device keeps unless `extra_config.rate_pps` says otherwise.
pub const DEFAULT_RATE_PPS: u32 = 50;

/// The bounds of the keys of `extra_config` that agents read, for the API's checks.
pub const DURATION_RANGE: std::ops::RangeInclusive<u64> = 1..=604_800;
pub const RATE_RANGE: std::ops::RangeInclusive<u64> = 1..=1_000_000;

/// A stored rule as agents evaluate it; `None` for rules the hub carries out itself.
pub fn agent_rule(r: &PreventionRule, device: Option<IpAddr>) -> Option<Rule> {
    let action = RuleAction::parse(&r.action_type)?;
    let extra = |key: &str, default: u32| {
        r.extra_config
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(default)
    };
    Some(Rule {
        id: r.id,
        name: r.rule_name.clone(),
        device,
        threshold: r.threshold,
        action,
        cooldown_secs: u32::try_from(r.cooldown_seconds).unwrap_or(0),
        duration_secs: extra("duration_seconds", DEFAULT_DURATION_SECS),
        rate_pps: extra("rate_pps", DEFAULT_RATE_PPS),
    })
}

/// The rule set of each of `agents_`.
pub fn rules_for(conn: &mut PgConnection, agents_: &[Uuid]) -> QueryResult<HashMap<Uuid, Vec<Rule>>> {
    let enabled: Vec<PreventionRule> = prevention_rules::table
        .filter(prevention_rules::is_enabled.eq(true))
        .order(prevention_rules::created_at.asc())
        .select(PreventionRule::as_select())
        .load(conn)?;
    let device_ids: Vec<Uuid> = enabled.iter().filter_map(|r| r.device_id).collect();
    let owners: HashMap<Uuid, (Option<Uuid>, IpNetwork)> = devices::table
        .filter(devices::id.eq_any(&device_ids))
        .select((devices::id, devices::agent_id, devices::ip_address))
        .load::<(Uuid, Option<Uuid>, IpNetwork)>(conn)?
        .into_iter()
        .map(|(id, agent, ip)| (id, (agent, ip)))
        .collect();
    let mut sets: HashMap<Uuid, Vec<Rule>> = agents_.iter().map(|a| (*a, Vec::new())).collect();
    for r in &enabled {
        match r.device_id {
            None => {
                if let Some(rule) = agent_rule(r, None) {
                    for set in sets.values_mut() {
                        set.push(rule.clone());
                    }
                }
            }
            Some(device) => {
                let Some((Some(agent), ip)) = owners.get(&device) else {
                    continue;
                };
                if let (Some(set), Some(rule)) = (sets.get_mut(agent), agent_rule(r, Some(ip.ip()))) {
                    set.push(rule);
                }
            }
        }
    }
    Ok(sets)
}

/// Online agents, to be told of a change.
fn online(conn: &mut PgConnection) -> QueryResult<Vec<Uuid>> {
    agents::table
        .filter(agents::status.eq("online"))
        .filter(agents::revoked_at.is_null())
        .select(agents::id)
        .load(conn)
}

/// Sends `agent` its rules.
pub async fn send_to(client: &AsyncClient, db: &Db, agent: Uuid) {
    match super::run(db, move |c| rules_for(c, &[agent])).await {
        Ok(mut sets) => {
            let rules = sets.remove(&agent).unwrap_or_default();
            super::command(client, agent, Action::SetRules { rules }).await;
        }
        Err(e) => tracing::warn!(%agent, error = %e, "prevention rules: loading them failed"),
    }
}

/// Each time `changed` is notified, sends every online agent its rules.
pub async fn push(client: AsyncClient, db: Db, changed: Arc<tokio::sync::Notify>) {
    loop {
        changed.notified().await;
        let sets = super::run(&db, |c| {
            let agents_ = online(c)?;
            rules_for(c, &agents_)
        })
        .await;
        match sets {
            Ok(sets) => {
                tracing::info!(
                    agents = sets.len(),
                    "prevention rules changed; sending them to online agents"
                );
                for (agent, rules) in sets {
                    super::command(&client, agent, Action::SetRules { rules }).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "prevention rules: loading them failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn stored(action: &str, extra: Option<serde_json::Value>) -> PreventionRule {
        PreventionRule {
            id: Uuid::new_v4(),
            device_id: None,
            rule_name: "r".into(),
            threshold: 0.8,
            action_type: action.into(),
            is_enabled: true,
            cooldown_seconds: 30,
            webhook_url: None,
            extra_config: extra,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn stored_rules_become_agent_rules_with_their_extra_settings() {
        let r = agent_rule(
            &stored(
                "rate_limit",
                Some(serde_json::json!({"rate_pps": 20, "duration_seconds": 90})),
            ),
            None,
        )
        .expect("an agent rule");
        assert_eq!(
            (r.action, r.rate_pps, r.duration_secs, r.cooldown_secs),
            (RuleAction::RateLimit, 20, 90, 30)
        );
        let d = agent_rule(&stored("block_ip", None), Some("10.0.0.9".parse().expect("ip"))).expect("an agent rule");
        assert_eq!((d.duration_secs, d.rate_pps), (DEFAULT_DURATION_SECS, DEFAULT_RATE_PPS));
        assert_eq!(d.device, Some("10.0.0.9".parse().expect("ip")));
        assert!(
            agent_rule(&stored("webhook", None), None).is_none(),
            "webhooks stay at the hub"
        );
    }
}
