//! Prevention at the edge: the hub's rules are evaluated on every detection, and what they
//! decide is enforced on the gateway with nftables ([`nft`]) — or, until the operator sets
//! `prevent.enforce = true`, only recorded (dry run). Protected addresses (the hub's,
//! loopback, `prevent.protected`) are never acted on, and every measure expires.
//!
//! What a rule did travels with the detection that fired it, through the spool to the hub's
//! prevention log: nothing decided here is lost while the hub is away.

pub mod nft;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use gatewatch_models::data::Network;
use gatewatch_proto::fleet::{PreventionEvent, Rule, RuleAction};
use gatewatch_proto::Detection;
use uuid::Uuid;

pub use nft::{Measure, Nft, NftError};

/// The hub's latest rules, kept in the state directory for restarts without the hub.
pub const RULES_FILE: &str = "rules.json";

/// A detection and what the prevention rules did about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub detection: Detection,
    pub prevention: Vec<PreventionEvent>,
}

/// How prevention runs on this agent (`[prevent]` in the configuration).
#[derive(Debug, Clone, Default)]
pub struct PreventConfig {
    /// Apply measures with nftables; false = dry run.
    pub enforce: bool,
    /// Never acted on, whatever a rule says (loopback is added).
    pub protected: Vec<Network>,
    /// The `nft` program and leading arguments.
    pub nft: Vec<String>,
}

/// Counters for metrics and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreventStats {
    /// Rules that fired (after threshold and cooldown).
    pub fired: u64,
    /// Measures applied with nftables.
    pub enforced: u64,
    /// Measures nftables refused.
    pub failed: u64,
    /// Measures not taken because their target is protected.
    pub spared: u64,
}

/// Evaluates rules and applies their measures.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    /// When each (rule, device) last fired, for cooldowns.
    fired: HashMap<(Uuid, IpAddr), Instant>,
    protected: Vec<Network>,
    /// None: dry run.
    nft: Option<Nft>,
    stats: PreventStats,
}

/// The rules kept in `state_dir`, none if the hub never sent any.
pub fn load_rules(state_dir: &Path) -> std::io::Result<Vec<Rule>> {
    crate::state_file::load(
        &state_dir.join(RULES_FILE),
        "delete it: the hub sends the rules again when the agent connects",
    )
}

pub fn save_rules(state_dir: &Path, rules: &[Rule]) -> std::io::Result<()> {
    crate::state_file::save(&state_dir.join(RULES_FILE), &rules)
}

/// The gateway's own addresses (every interface's), which no rule may block: a device talking
/// to its gateway is not an attacker, and cutting the gateway off itself helps nobody.
pub fn own_addresses() -> Vec<Network> {
    match pcap::Device::list() {
        Ok(devices) => devices
            .iter()
            .flat_map(|d| d.addresses.iter())
            .filter_map(|a| a.addr.to_string().parse::<Network>().ok())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the gateway's addresses to protect them");
            Vec::new()
        }
    }
}

impl Engine {
    /// With `config.enforce`, installs the nftables table (replacing one left behind).
    pub fn new(config: &PreventConfig, rules: Vec<Rule>) -> Result<Engine, NftError> {
        let mut protected = config.protected.clone();
        for loopback in ["127.0.0.0/8", "::1/128"] {
            if let Ok(n) = loopback.parse() {
                protected.push(n);
            }
        }
        let nft = if config.enforce {
            Some(Nft::install(config.nft.clone(), &protected)?)
        } else {
            None
        };
        Ok(Engine {
            rules,
            fired: HashMap::new(),
            protected,
            nft,
            stats: PreventStats::default(),
        })
    }

    pub fn is_dry_run(&self) -> bool {
        self.nft.is_none()
    }

    pub fn stats(&self) -> PreventStats {
        self.stats
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Replaces the rules; cooldowns of rules that stay are kept.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        self.fired.retain(|(id, _), _| rules.iter().any(|r| r.id == *id));
        self.rules = rules;
    }

    pub fn is_protected(&self, ip: IpAddr) -> bool {
        self.protected.iter().any(|n| n.contains(ip))
    }

    /// The rules that fire on `d`: its device's and the global ones, with a score at or above
    /// their threshold, out of cooldown. `now_ms` is the wall clock (for expiry times).
    pub fn evaluate(&mut self, d: &Detection, now: Instant, now_ms: i64) -> Vec<PreventionEvent> {
        let mut due = Vec::new();
        for rule in &self.rules {
            if rule.device.is_some_and(|device| device != d.device) || f64::from(d.score) < rule.threshold {
                continue;
            }
            let key = (rule.id, d.device);
            let cooldown = Duration::from_secs(rule.cooldown_secs.into());
            if self
                .fired
                .get(&key)
                .is_some_and(|last| now.duration_since(*last) < cooldown)
            {
                continue;
            }
            self.fired.insert(key, now);
            due.push(rule.clone());
        }
        due.iter().map(|rule| self.fire(rule, d, now_ms)).collect()
    }

    fn fire(&mut self, rule: &Rule, d: &Detection, now_ms: i64) -> PreventionEvent {
        self.stats.fired += 1;
        let secs = rule.duration_secs.max(1);
        let (target, measure, verb) = match rule.action {
            RuleAction::BlockIp => (d.peer, Some(Measure::Block), "block"),
            RuleAction::Quarantine => (Some(d.device), Some(Measure::Quarantine), "quarantine"),
            RuleAction::RateLimit => (
                Some(d.device),
                Some(Measure::RateLimit {
                    pps: rule.rate_pps.max(1),
                }),
                "rate-limit",
            ),
            RuleAction::AlertOnly => (Some(d.device), None, "alert on"),
        };
        let event = |enforced, success, expires_at_ms, message: String| PreventionEvent {
            id: Uuid::now_v7(),
            rule_id: rule.id,
            action: rule.action,
            target,
            enforced,
            success,
            expires_at_ms,
            message: format!("rule {:?}: {message}", rule.name),
        };
        let (Some(measure), Some(ip)) = (measure, target) else {
            return match rule.action {
                RuleAction::AlertOnly => event(false, true, None, format!("{} detected on {}", d.family, d.device)),
                _ => event(
                    false,
                    false,
                    None,
                    "no peer to block: the window has no other endpoint".into(),
                ),
            };
        };
        if self.is_protected(ip) {
            self.stats.spared += 1;
            return event(
                false,
                false,
                None,
                format!("{ip} is a protected address (the hub, the gateway, management or loopback): not touched"),
            );
        }
        if d.simulation.is_some() {
            // An attack-simulation test never blocks a real peer or cuts a real device off.
            return event(
                false,
                true,
                None,
                format!("dry run (attack simulation): would {verb} {ip} for {secs} s"),
            );
        }
        let Some(nft) = &mut self.nft else {
            return event(
                false,
                true,
                None,
                format!("dry run: would {verb} {ip} for {secs} s (set prevent.enforce = true to enforce)"),
            );
        };
        match nft.apply(measure, ip, Duration::from_secs(secs.into())) {
            Ok(()) => {
                self.stats.enforced += 1;
                tracing::info!(rule = %rule.name, action = rule.action.as_str(), target = %ip, secs, "prevention measure applied");
                event(
                    true,
                    true,
                    Some(now_ms + i64::from(secs) * 1000),
                    format!("{verb} {ip} for {secs} s"),
                )
            }
            Err(e) => {
                self.stats.failed += 1;
                tracing::warn!(rule = %rule.name, action = rule.action.as_str(), target = %ip, error = %e, "prevention measure failed");
                event(true, false, None, format!("{verb} {ip} failed: {e}"))
            }
        }
    }
}

impl Drop for Engine {
    /// A stopped agent enforces nothing: its table goes with it.
    fn drop(&mut self) {
        if let Some(nft) = &mut self.nft {
            if let Err(e) = nft.remove() {
                tracing::warn!(error = %e, "could not remove the nftables table {}", nft::TABLE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_proto::WindowSpan;

    fn detection(device: &str, peer: Option<&str>, score: f32) -> Detection {
        Detection {
            device: device.parse().expect("ip"),
            window: WindowSpan {
                first_flow_id: 1,
                last_flow_id: 10,
                first_ts_ns: 0,
                last_ts_ns: 1,
            },
            score,
            label: if score >= 0.5 { "attack" } else { "benign" }.into(),
            confidence: (score - 0.5).abs() * 2.0,
            family: "scan".into(),
            family_probs: Default::default(),
            model_version: "m".into(),
            inference_latency_ms: 0.1,
            peer: peer.map(|p| p.parse().expect("ip")),
            padded_flows: 0,
            simulation: None,
        }
    }

    fn rule(action: RuleAction, device: Option<&str>, threshold: f64, cooldown_secs: u32) -> Rule {
        Rule {
            id: Uuid::now_v7(),
            name: format!("{action:?}"),
            device: device.map(|d| d.parse().expect("ip")),
            threshold,
            action,
            cooldown_secs,
            duration_secs: 60,
            rate_pps: 10,
        }
    }

    fn dry(rules: Vec<Rule>, protected: &[&str]) -> Engine {
        let config = PreventConfig {
            enforce: false,
            protected: protected.iter().map(|p| p.parse().expect("network")).collect(),
            nft: vec!["nft".into()],
        };
        Engine::new(&config, rules).expect("a dry run needs no nft")
    }

    #[test]
    fn a_rule_fires_at_its_threshold_for_its_device_once_per_cooldown() {
        let only_20 = rule(RuleAction::BlockIp, Some("10.0.0.20"), 0.8, 60);
        let global = rule(RuleAction::AlertOnly, None, 0.5, 0);
        let mut engine = dry(vec![only_20.clone(), global.clone()], &[]);
        let t0 = Instant::now();
        let fired = |e: &mut Engine, d: &Detection, t: Instant| -> Vec<Uuid> {
            e.evaluate(d, t, 0).into_iter().map(|ev| ev.rule_id).collect()
        };
        assert_eq!(
            fired(&mut engine, &detection("10.0.0.20", Some("203.0.113.9"), 0.3), t0),
            Vec::<Uuid>::new()
        );
        assert_eq!(
            fired(&mut engine, &detection("10.0.0.20", Some("203.0.113.9"), 0.7), t0),
            vec![global.id]
        );
        assert_eq!(
            fired(&mut engine, &detection("10.0.0.20", Some("203.0.113.9"), 0.8), t0),
            vec![only_20.id, global.id],
            "the threshold is inclusive"
        );
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            fired(&mut engine, &detection("10.0.0.20", Some("203.0.113.9"), 0.99), later),
            vec![global.id],
            "cooling down"
        );
        assert_eq!(
            fired(&mut engine, &detection("10.0.0.21", Some("203.0.113.9"), 0.99), later),
            vec![global.id],
            "another device"
        );
        let after = t0 + Duration::from_secs(60);
        assert_eq!(
            fired(&mut engine, &detection("10.0.0.20", None, 0.99), after),
            vec![only_20.id, global.id]
        );
        assert_eq!(engine.stats().fired, 7);
    }

    #[test]
    fn a_dry_run_says_what_it_would_do_and_protected_addresses_are_never_targets() {
        let rules = vec![
            rule(RuleAction::BlockIp, None, 0.5, 0),
            rule(RuleAction::Quarantine, None, 0.5, 0),
            rule(RuleAction::RateLimit, None, 0.5, 0),
        ];
        let mut engine = dry(rules, &["192.0.2.0/24"]);
        assert!(engine.is_dry_run());
        let events = engine.evaluate(&detection("10.0.0.20", Some("203.0.113.9"), 0.9), Instant::now(), 0);
        assert_eq!(events.len(), 3);
        for e in &events {
            assert!(!e.enforced && e.success, "{e:?}");
            assert!(e.message.contains("dry run: would"), "{}", e.message);
        }
        assert_eq!(
            events[0].target,
            Some("203.0.113.9".parse().expect("ip")),
            "block_ip blocks the peer"
        );
        assert_eq!(
            events[1].target,
            Some("10.0.0.20".parse().expect("ip")),
            "quarantine cuts the device off"
        );

        let events = engine.evaluate(&detection("10.0.0.21", Some("192.0.2.7"), 0.9), Instant::now(), 0);
        assert!(
            !events[0].success && events[0].message.contains("protected"),
            "{:?}",
            events[0]
        );
        let events = engine.evaluate(&detection("10.0.0.22", Some("127.0.0.1"), 0.9), Instant::now(), 0);
        assert!(!events[0].success, "loopback is always protected");
        let events = engine.evaluate(&detection("10.0.0.23", None, 0.9), Instant::now(), 0);
        assert!(
            !events[0].success && events[0].message.contains("no peer"),
            "{:?}",
            events[0]
        );
        assert_eq!(engine.stats().spared, 2);
    }

    #[test]
    fn new_rules_replace_the_old_and_keep_the_cooldowns_of_those_that_stay() {
        let kept = rule(RuleAction::AlertOnly, None, 0.5, 60);
        let dropped = rule(RuleAction::AlertOnly, None, 0.5, 60);
        let mut engine = dry(vec![kept.clone(), dropped], &[]);
        let t0 = Instant::now();
        assert_eq!(engine.evaluate(&detection("10.0.0.20", None, 0.9), t0, 0).len(), 2);
        engine.set_rules(vec![kept]);
        assert!(engine.evaluate(&detection("10.0.0.20", None, 0.9), t0, 0).is_empty());
        assert_eq!(engine.rules().len(), 1);
    }

    #[test]
    fn rules_are_kept_in_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_rules(dir.path()).expect("none yet").is_empty());
        let rules = vec![rule(RuleAction::RateLimit, Some("10.0.0.20"), 0.7, 30)];
        save_rules(dir.path(), &rules).expect("save");
        assert_eq!(load_rules(dir.path()).expect("load"), rules);
    }
}
