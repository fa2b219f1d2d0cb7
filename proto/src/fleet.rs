//! The fleet link's MQTT contract: topics and the JSON messages on them.
//!
//! Topics are `gw/v1/agents/{agent_id}/{channel}`; an agent publishes and subscribes only
//! under its own id. Every message carries `schema` so either side can refuse what it does
//! not understand. JSON keeps the traffic readable with `mosquitto_sub`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::detection::Detection;

/// Version of the messages below; bumped on incompatible change.
pub const SCHEMA: u32 = 1;
/// Every agent topic starts with this.
pub const ROOT: &str = "gw/v1/agents";

/// The part of a topic after the agent id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Agent → hub, retained: online/offline (offline is also the last will) and heartbeats.
    Status,
    /// Agent → hub: batches of detections, numbered for acknowledgement.
    Predictions,
    /// Hub → agent: the highest batch number committed to the database.
    Ack,
    /// Hub → agent: something to do ([`Command`]).
    Command,
    /// Agent → hub: how an operator's command ended ([`CommandResult`]).
    CommandResult,
    /// Agent → hub: the progress of an attack-simulation session ([`AttackReport`]).
    Attack,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Status,
        Channel::Predictions,
        Channel::Ack,
        Channel::Command,
        Channel::CommandResult,
        Channel::Attack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Status => "status",
            Channel::Predictions => "predictions",
            Channel::Ack => "ack",
            Channel::Command => "cmd",
            Channel::CommandResult => "cmd/ack",
            Channel::Attack => "attack",
        }
    }
}

/// The JSON payload of a fleet message. Every message of this module is plain data (strings,
/// numbers, ids, string-keyed maps), which serde_json always serialises; a failure would be a
/// bug in this crate, and it panics rather than go out as an empty MQTT payload that the other
/// side reads as garbage.
pub fn payload<T: Serialize>(message: &T) -> Vec<u8> {
    match serde_json::to_vec(message) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a fleet message failed to serialise: {e}"),
    }
}

/// `gw/v1/agents/{agent}/{channel}`.
pub fn topic(agent: Uuid, channel: Channel) -> String {
    format!("{ROOT}/{agent}/{}", channel.as_str())
}

/// The MQTT client id of an agent; the hub's listener holds agents to it.
pub fn agent_client_id(agent: Uuid) -> String {
    format!("gw-agent-{agent}")
}

/// What the hub subscribes to for every agent's messages to it.
pub fn hub_subscriptions() -> [String; 4] {
    [
        format!("{ROOT}/+/{}", Channel::Status.as_str()),
        format!("{ROOT}/+/{}", Channel::Predictions.as_str()),
        format!("{ROOT}/+/{}", Channel::CommandResult.as_str()),
        format!("{ROOT}/+/{}", Channel::Attack.as_str()),
    ]
}

/// The agent id and channel of a topic, if it is one of ours.
pub fn parse_topic(topic: &str) -> Option<(Uuid, Channel)> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (agent, channel) = rest.split_once('/')?;
    let agent = Uuid::parse_str(agent).ok()?;
    let channel = Channel::ALL.into_iter().find(|c| c.as_str() == channel)?;
    Some((agent, channel))
}

/// Where an MQTT broker is: `mqtt://HOST[:PORT]` (plain, port 1883 by default) or
/// `mqtts://HOST[:PORT]` (TLS, port 8883 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Parses a broker URL, or says what is wrong with it.
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, String> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else {
        return Err(format!("{url:?} does not start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, p.parse::<u16>().map_err(|_| format!("{url:?} has a bad port"))?),
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(BrokerUrl {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Topics an agent may publish to: its own, except those the hub speaks on.
pub fn agent_may_publish(agent: Uuid, topic: &str) -> bool {
    matches!(
        parse_topic(topic),
        Some((a, Channel::Status | Channel::Predictions | Channel::CommandResult | Channel::Attack)) if a == agent
    )
}

/// Filters an agent may subscribe to: only under its own id (wildcards allowed below it).
pub fn agent_may_subscribe(agent: Uuid, filter: &str) -> bool {
    filter
        .strip_prefix(&format!("{ROOT}/{agent}/"))
        .is_some_and(|rest| !rest.is_empty())
}

/// Hub → agent on `…/cmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub schema: u32,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Score with this model version: download it over QUIC if it is not the one in use.
    UseModel { version: String },
    /// Score this device's windows from now on (kept across restarts).
    StartMonitoring { command_id: Uuid, device: IpAddr },
    /// Stop scoring this device's windows, even inside a configured network.
    StopMonitoring { command_id: Uuid, device: IpAddr },
    /// Download the operator's capture `upload_id` over QUIC and replay it through the
    /// pipeline; the device is monitored from then on.
    ReplayPcap {
        command_id: Uuid,
        device: IpAddr,
        upload_id: Uuid,
        len: u64,
        sha256: String,
    },
    /// Evaluate these prevention rules on every detection from now on (the whole set:
    /// it replaces the previous one). Sent when rules change and when the agent comes online.
    SetRules { rules: Vec<Rule> },
    /// Run an attack-simulation session against `device`: its steps in order, a benign gap
    /// between them. Answered when the session ends; progress goes on the attack channel.
    AttackStart {
        command_id: Uuid,
        session_id: Uuid,
        device: IpAddr,
        steps: Vec<AttackStepSpec>,
        /// Seconds of the device's own traffic alone between two steps.
        gap_secs: u32,
    },
    /// Abort the session: the running step ends as aborted, later steps are skipped.
    AttackStop { command_id: Uuid, session_id: Uuid },
    /// Federated learning: make this epoch's committee key share (see [`crate::fl`]).
    FlKeygen(crate::fl::KeygenOrder),
    /// Federated learning: train one round and upload the encrypted update.
    FlTrain(crate::fl::TrainOrder),
    /// Federated learning: answer the round's decryption request.
    FlDecrypt(crate::fl::DecryptOrder),
    /// An operator's verdict on an alert's windows, for the local training set.
    FlLabel(crate::fl::LabelOrder),
}

impl Action {
    /// The operator's command this carries out (a model rollout is the hub's own).
    pub fn command_id(&self) -> Option<Uuid> {
        match self {
            Action::UseModel { .. }
            | Action::SetRules { .. }
            | Action::FlKeygen(_)
            | Action::FlTrain(_)
            | Action::FlDecrypt(_)
            | Action::FlLabel(_) => None,
            Action::StartMonitoring { command_id, .. }
            | Action::StopMonitoring { command_id, .. }
            | Action::ReplayPcap { command_id, .. }
            | Action::AttackStart { command_id, .. }
            | Action::AttackStop { command_id, .. } => Some(*command_id),
        }
    }
}

/// What a prevention rule does when it fires on the gateway (`webhook` rules stay at the hub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Drop traffic to and from the window's main peer (the suspected attacker or C2 server).
    BlockIp,
    /// Limit the device's packet rate.
    RateLimit,
    /// Cut the device off: nothing forwarded to or from it.
    Quarantine,
    /// Record and alert only.
    AlertOnly,
}

impl RuleAction {
    pub const ALL: [RuleAction; 4] = [
        RuleAction::BlockIp,
        RuleAction::RateLimit,
        RuleAction::Quarantine,
        RuleAction::AlertOnly,
    ];

    /// The hub's `prevention_rules.action_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::BlockIp => "block_ip",
            RuleAction::RateLimit => "rate_limit",
            RuleAction::Quarantine => "quarantine",
            RuleAction::AlertOnly => "alert_only",
        }
    }

    pub fn parse(s: &str) -> Option<RuleAction> {
        RuleAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A prevention rule as an agent evaluates it: it fires on a detection of `device` (any
/// device of the agent if `None`) whose score is at least `threshold`, at most once per
/// `cooldown_secs` per device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: Uuid,
    pub name: String,
    pub device: Option<IpAddr>,
    pub threshold: f64,
    pub action: RuleAction,
    pub cooldown_secs: u32,
    /// How long a block, rate limit or quarantine lasts; every one expires.
    pub duration_secs: u32,
    /// Packets per second a rate-limited device keeps.
    pub rate_pps: u32,
}

/// What a rule did on a detection; it travels with the prediction that fired it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreventionEvent {
    /// Made at the agent, so that re-delivery stores it once.
    pub id: Uuid,
    pub rule_id: Uuid,
    pub action: RuleAction,
    /// The address acted on: the peer for `block_ip`, the device otherwise.
    pub target: Option<IpAddr>,
    /// False while enforcement is off (dry run): the action was decided, not applied.
    pub enforced: bool,
    pub success: bool,
    /// When the block ends, milliseconds since the Unix epoch.
    pub expires_at_ms: Option<i64>,
    /// What happened, for the operator.
    pub message: String,
}

/// One step of an attack-simulation session, as the agent runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackStepSpec {
    /// 1-based position in the session.
    pub order: u32,
    /// The hub's attack type (`ddos_flood`, `port_scan`, …).
    pub attack_type: String,
    /// e.g. `udp_flood` for `ddos_flood`; `None` for the type's default.
    #[serde(default)]
    pub variant: Option<String>,
    pub duration_secs: u32,
    /// 0..=1: the simulator's rate or volume.
    pub intensity: f64,
    /// FGSM budget in scaled feature space; `None` for a clean step.
    #[serde(default)]
    pub adversarial_epsilon: Option<f64>,
}

/// How a step or a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Aborted,
    Failed,
    /// Not run: the session was stopped or failed before it.
    Skipped,
}

impl RunStatus {
    /// The hub's `attack_steps.status` / `attack_sessions.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Aborted => "aborted",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// What the agent measured on one step's windows (windows holding the step's simulated flows).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepMetrics {
    pub windows: u32,
    /// Of those, flagged as attacks (after the FGSM perturbation on adversarial steps).
    pub attack_windows: u32,
    /// `attack_windows / windows`; 0 without windows.
    pub detection_rate: f64,
    /// Adversarial steps: the rate on the same windows unperturbed.
    #[serde(default)]
    pub clean_detection_rate: Option<f64>,
    /// Mean confidence of the step's windows.
    pub avg_confidence: f64,
    /// Mean attack score of the step's windows.
    pub avg_score: f64,
    /// From the step's start to its first window flagged as an attack.
    #[serde(default)]
    pub detection_latency_ms: Option<f64>,
    /// Of the flagged windows, the share whose family is the step's.
    #[serde(default)]
    pub family_accuracy: Option<f64>,
    /// What prevention decided on the step's windows (always a dry run), e.g. `block_ip`.
    #[serde(default)]
    pub prevention: Option<String>,
}

/// Agent → hub on `…/attack`: a session's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    pub schema: u32,
    pub session_id: Uuid,
    /// Milliseconds since the Unix epoch at the agent.
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: AttackEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AttackEvent {
    /// The session runs, with this model.
    SessionStarted {
        model_version: String,
    },
    StepStarted {
        order: u32,
    },
    /// A step ended (completed, aborted or failed) with what its windows showed so far.
    StepEnded {
        order: u32,
        status: RunStatus,
        metrics: StepMetrics,
        #[serde(default)]
        message: Option<String>,
    },
    /// The session ended; steps not run are skipped.
    SessionEnded {
        status: RunStatus,
        #[serde(default)]
        message: Option<String>,
    },
}

/// Agent → hub on `…/cmd/ack`: how a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub schema: u32,
    pub command_id: Uuid,
    pub outcome: Outcome,
    /// What was done (or why not), for the operator.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Failed,
}

impl Outcome {
    /// The hub's `agent_commands.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
}

/// The agent's status, retained on its status topic; re-published as the heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub schema: u32,
    pub agent_id: Uuid,
    pub state: AgentState,
    /// Name the operator gave the agent (config key `name`).
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub model_version: Option<String>,
    /// Seconds between heartbeats; the hub marks the agent offline after three missed.
    pub heartbeat_secs: u32,
    /// Milliseconds since the Unix epoch at the agent.
    pub sent_at_ms: i64,
    /// The local training set (federated learning): windows per family. The windows stay on
    /// the gateway; only these counts are reported.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fl_local_windows: std::collections::BTreeMap<String, u32>,
}

/// One detection with the id the agent gave it (a UUIDv7: time-ordered, unique without
/// coordination), so that re-delivery stores nothing twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionMsg {
    pub id: Uuid,
    #[serde(flatten)]
    pub detection: Detection,
    /// Prevention rules this detection fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prevention: Vec<PreventionEvent>,
}

/// A batch of detections. `seq` numbers batches within the agent's spool `epoch` (a new
/// spool starts a new epoch); the hub acknowledges the highest `seq` it has committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionBatch {
    pub schema: u32,
    pub agent_id: Uuid,
    pub epoch: Uuid,
    pub seq: u64,
    pub predictions: Vec<PredictionMsg>,
}

/// Hub → agent: every batch of `epoch` up to `seq` is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub schema: u32,
    pub epoch: Uuid,
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_strangers_are_refused() {
        let agent = Uuid::now_v7();
        for channel in Channel::ALL {
            assert_eq!(parse_topic(&topic(agent, channel)), Some((agent, channel)));
        }
        for bad in [
            "gw/v1/agents/not-a-uuid/status",
            "gw/v2/agents/0191e8f4-1c2b-7cc3-9d2e-0123456789ab/status",
            "gw/v1/agents/0191e8f4-1c2b-7cc3-9d2e-0123456789ab/unknown",
            "gw/v1/agents/0191e8f4-1c2b-7cc3-9d2e-0123456789ab",
            "gw/v1/agents/0191e8f4-1c2b-7cc3-9d2e-0123456789ab/status/extra",
        ] {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
        assert_eq!(hub_subscriptions()[1], "gw/v1/agents/+/predictions");
        assert_eq!(hub_subscriptions()[2], "gw/v1/agents/+/cmd/ack");
    }

    #[test]
    fn broker_urls_name_scheme_host_and_port() {
        let plain = parse_broker_url("mqtt://127.0.0.1").expect("valid");
        assert_eq!((plain.host.as_str(), plain.port, plain.tls), ("127.0.0.1", 1883, false));
        let tls = parse_broker_url("mqtts://hub.example:9883/").expect("valid");
        assert_eq!((tls.host.as_str(), tls.port, tls.tls), ("hub.example", 9883, true));
        assert_eq!(parse_broker_url("mqtts://[::1]").expect("valid").host, "::1");
        assert_eq!(tls.to_string(), "mqtts://hub.example:9883");
        for bad in ["http://x", "mqtt://", "mqtt://h:99999", "mqtts://:1"] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_agent_speaks_and_listens_only_under_its_own_id() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(agent_may_publish(me, &topic(me, Channel::Predictions)));
        assert!(agent_may_publish(me, &topic(me, Channel::Status)));
        assert!(agent_may_publish(me, &topic(me, Channel::CommandResult)));
        assert!(!agent_may_publish(me, &topic(other, Channel::CommandResult)));
        assert!(
            !agent_may_publish(me, &topic(me, Channel::Ack)),
            "acks come from the hub only"
        );
        assert!(!agent_may_publish(me, &topic(me, Channel::Command)), "so do commands");
        assert!(agent_may_subscribe(me, &topic(me, Channel::Command)));
        assert!(!agent_may_publish(me, &topic(other, Channel::Predictions)));
        assert!(!agent_may_publish(me, "gw/v1/agents/+/predictions"));
        assert!(agent_may_subscribe(me, &topic(me, Channel::Ack)));
        assert!(agent_may_subscribe(me, &format!("{ROOT}/{me}/#")));
        for bad in [
            "#".to_string(),
            format!("{ROOT}/+/ack"),
            format!("{ROOT}/{other}/ack"),
            format!("{ROOT}/{me}/"),
        ] {
            assert!(!agent_may_subscribe(me, &bad), "{bad}");
        }
    }

    #[test]
    fn commands_read_as_flat_json() {
        let cmd = Command {
            schema: SCHEMA,
            action: Action::UseModel { version: "v7".into() },
        };
        let json = serde_json::to_value(&cmd).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"schema": 1, "action": "use_model", "version": "v7"})
        );
        assert_eq!(serde_json::from_value::<Command>(json).expect("parses"), cmd);
        let id = Uuid::now_v7();
        let stop = Command {
            schema: SCHEMA,
            action: Action::StopMonitoring {
                command_id: id,
                device: "10.0.0.7".parse().expect("ip"),
            },
        };
        let json = serde_json::to_value(&stop).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"schema": 1, "action": "stop_monitoring", "command_id": id, "device": "10.0.0.7"})
        );
        assert_eq!(stop.action.command_id(), Some(id));
        let result = CommandResult {
            schema: SCHEMA,
            command_id: id,
            outcome: Outcome::Failed,
            message: "no".into(),
        };
        assert_eq!(
            serde_json::to_value(&result).expect("serialises")["outcome"],
            serde_json::json!("failed")
        );
    }

    #[test]
    fn a_prediction_keeps_its_detection_fields_at_the_top_level() {
        let json = serde_json::json!({
            "id": "0191e8f4-1c2b-7cc3-9d2e-0123456789ab",
            "device": "192.168.1.20",
            "window": {"first_flow_id": 1, "last_flow_id": 10, "first_ts_ns": 5, "last_ts_ns": 9},
            "score": 0.875, "label": "attack", "confidence": 0.75, "family": "scan",
            "family_probs": {"benign": 0.125, "scan": 0.875},
            "model_version": "m1", "inference_latency_ms": 0.5
        });
        let p: PredictionMsg = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(p.detection.family, "scan");
        assert_eq!(serde_json::to_value(&p).expect("serialises"), json);
    }
}
