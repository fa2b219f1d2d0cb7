//! The agent's configuration: one TOML file (`/etc/gatewatch/agent.toml`), then
//! `GATEWATCH_<KEY>` environment overrides, then validation with messages that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatewatch_models::data::Network;
use gatewatch_proto::fleet::BrokerUrl;
use serde::Deserialize;

use crate::flow::Mode;
use crate::uplink::{Fsync, SpoolConfig, WhenFull};

/// Every key with its default, for `--help` and the example file `agent/gatewatch-agent.example.toml`.
pub const KEYS_HELP: &str = "\
Configuration keys (TOML file given by --config, default /etc/gatewatch/agent.toml if present;
environment overrides in brackets):
  name                     this agent's name on the hub [hostname]            (GATEWATCH_NAME)
  state_dir                agent id, spool [/var/lib/gatewatch-agent]          (GATEWATCH_STATE_DIR)
  hub.mqtt_url             MQTT broker, mqtts://HOST:PORT (mutual TLS, needs `enroll`) or mqtt://HOST:PORT
                           [the enrolled hub's, else mqtt://127.0.0.1:1883]      (GATEWATCH_HUB_MQTT_URL)
  hub.heartbeat_secs       status heartbeat; offline after 3 missed [10]
  source.kind              interface | pcap | simulator [simulator]            (GATEWATCH_SOURCE)
  source.interface         capture interface for kind = interface            (GATEWATCH_INTERFACE)
  source.filter            BPF filter for kind = interface [\"\"]
  source.pcap              capture file for kind = pcap (replayed at its own timing, looped)
  source.replay_speed      pcap replay speed, 1 = real time [1.0]
  source.simulator_seed    simulator seed [1]
  source.simulator_target  the simulated IoT device under attack [192.168.1.20]
  source.simulator_intensity  0 (mildest) to 1: rate and volume of simulated attacks [0.2]
  source.attack_every_secs a simulated attack starts every so many seconds [60]
  flow.mode                correct | cic2017 [correct]
  detect.devices           monitored networks, CIDR list; [] = only the devices started from the hub
                           [\"192.168.0.0/16\"]                                 (GATEWATCH_DEVICES, comma-separated)
  detect.model_dir         model directory [./models/default or /usr/share/gatewatch-agent/model] (GATEWATCH_MODEL_DIR)
  detect.batch             windows per tract run [64]
  detect.max_wait_ms       a ready window waits at most this long for its batch [200]
  detect.partial_after_ms  a device with fewer than 10 flows is scored on a padded window after
                           this long without a new flow; 0 = only at shutdown [5000]
  uplink.batch_max         detections per MQTT message [100]
  uplink.batch_wait_ms     a detection waits at most this long to be sent [200]
  uplink.in_flight         batches sent ahead of the hub's acknowledgement [32]
  uplink.resend_after_secs unacknowledged batches are sent again after [10]
  uplink.drain_secs        at stop, wait this long for the hub to acknowledge [10]
  uplink.flow_records      upload monitored devices' flow records over QUIC (enrolled agents) [true]
  spool.max_bytes          disk spool cap [268435456]
  spool.segment_bytes      spool segment file size [8388608]
  spool.fsync              always | periodic | never [periodic]
  spool.when_full          drop_oldest | reject_new [drop_oldest]
  prevent.enforce          apply the hub's prevention rules with nftables; false = dry run [false]
                                                                               (GATEWATCH_PREVENT_ENFORCE)
  prevent.protected        addresses never blocked, CIDR list (management networks; the hub's
                           addresses, the gateway's own and loopback always are) [[]]
  prevent.nft              the nft program [\"nft\"]
  fl.enabled               train the hub's model locally when it runs federated learning (enrolled
                           agents; only encrypted updates and metrics leave the gateway) [true]
  fl.max_windows           local training set size, oldest out [4000]
  fl.validation_fraction   share of local windows held out to measure each round [0.2]
  fl.benign_max_score      a window scored at most this is a benign pseudo-label [0.1]
  fl.quiet_secs            ...if its device had no flagged window this close in time [60]
  fl.synth_families        attack families simulated locally for training
                           [all the simulator makes: scan, dos_ddos, brute_force, slow_rate, botnet_c2,
                            exfiltration, web_attack]
  fl.synth_windows         simulated attack windows per family and round [150]
  fl.max_train_seconds     a round's local training stops after this [300]
  metrics_listen           Prometheus endpoint, ADDRESS:PORT or \"off\" [127.0.0.1:9477] (GATEWATCH_METRICS_LISTEN)
  log                      tracing filter [info]                               (GATEWATCH_LOG)";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub name: Option<String>,
    pub state_dir: PathBuf,
    pub hub: HubConfig,
    pub source: SourceConfig,
    pub flow: FlowSection,
    pub detect: DetectSection,
    pub uplink: UplinkConfig,
    pub spool: SpoolSection,
    pub prevent: PreventSection,
    pub fl: crate::fl::FlConfig,
    pub metrics_listen: String,
    pub log: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    pub mqtt_url: Option<String>,
    pub heartbeat_secs: u32,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Interface,
    Pcap,
    Simulator,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    pub interface: Option<String>,
    pub filter: String,
    pub pcap: Option<PathBuf>,
    pub replay_speed: f64,
    pub simulator_seed: u64,
    pub simulator_target: std::net::Ipv4Addr,
    pub simulator_intensity: f64,
    pub attack_every_secs: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlowSection {
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectSection {
    pub devices: Vec<String>,
    pub model_dir: Option<PathBuf>,
    pub batch: usize,
    pub max_wait_ms: u64,
    pub partial_after_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UplinkConfig {
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    pub in_flight: usize,
    pub resend_after_secs: u64,
    pub drain_secs: u64,
    pub flow_records: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PreventSection {
    pub enforce: bool,
    pub protected: Vec<String>,
    pub nft: String,
}

impl Default for PreventSection {
    fn default() -> Self {
        PreventSection {
            enforce: false,
            protected: Vec::new(),
            nft: "nft".into(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: None,
            state_dir: PathBuf::from("/var/lib/gatewatch-agent"),
            hub: HubConfig::default(),
            source: SourceConfig::default(),
            flow: FlowSection::default(),
            detect: DetectSection::default(),
            uplink: UplinkConfig::default(),
            spool: SpoolSection::default(),
            prevent: PreventSection::default(),
            fl: crate::fl::FlConfig::default(),
            metrics_listen: "127.0.0.1:9477".into(),
            log: "info".into(),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            mqtt_url: None,
            heartbeat_secs: 10,
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Simulator,
            interface: None,
            filter: String::new(),
            pcap: None,
            replay_speed: 1.0,
            simulator_seed: 1,
            simulator_target: std::net::Ipv4Addr::new(192, 168, 1, 20),
            simulator_intensity: 0.2,
            attack_every_secs: 60,
        }
    }
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection { mode: "correct".into() }
    }
}

impl Default for DetectSection {
    fn default() -> Self {
        DetectSection {
            devices: vec!["192.168.0.0/16".into()],
            model_dir: None,
            batch: 64,
            max_wait_ms: 200,
            partial_after_ms: 5_000,
        }
    }
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            batch_max: 100,
            batch_wait_ms: 200,
            in_flight: 32,
            resend_after_secs: 10,
            drain_secs: 10,
            flow_records: true,
        }
    }
}

impl Default for SpoolSection {
    fn default() -> Self {
        let d = SpoolConfig::default();
        SpoolSection {
            max_bytes: d.max_bytes,
            segment_bytes: d.segment_bytes,
            fsync: d.fsync,
            when_full: d.when_full,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` {problem}; {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}

/// The broker an agent uses when neither the configuration nor an enrollment names one.
pub const DEFAULT_MQTT_URL: &str = "mqtt://127.0.0.1:1883";

impl AgentConfig {
    /// Reads `file` (if given), applies the environment, validates.
    pub fn load(file: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => AgentConfig::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `GATEWATCH_<KEY>` overrides for the keys an operator changes per machine. A value that
    /// is not one of the allowed ones is an error: an unknown source must not quietly run the
    /// simulator (an IDS watching made-up packets and reporting healthy), nor a misspelt
    /// "enforce" quietly mean dry run.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("GATEWATCH_NAME") {
            self.name = Some(v);
        }
        if let Some(v) = get("GATEWATCH_STATE_DIR") {
            self.state_dir = v.into();
        }
        if let Some(v) = get("GATEWATCH_METRICS_LISTEN") {
            self.metrics_listen = v;
        }
        if let Some(v) = get("GATEWATCH_HUB_MQTT_URL") {
            self.hub.mqtt_url = Some(v);
        }
        if let Some(v) = get("GATEWATCH_SOURCE") {
            self.source.kind = match v.trim() {
                "interface" => SourceKind::Interface,
                "pcap" => SourceKind::Pcap,
                "simulator" => SourceKind::Simulator,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "GATEWATCH_SOURCE",
                        problem: format!("is {other:?}"),
                        fix: "use interface, pcap or simulator",
                    })
                }
            };
        }
        if let Some(v) = get("GATEWATCH_INTERFACE") {
            self.source.interface = Some(v);
        }
        if let Some(v) = get("GATEWATCH_DEVICES") {
            self.detect.devices = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("GATEWATCH_MODEL_DIR") {
            self.detect.model_dir = Some(v.into());
        }
        if let Some(v) = get("GATEWATCH_PREVENT_ENFORCE") {
            self.prevent.enforce = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "GATEWATCH_PREVENT_ENFORCE",
                        problem: format!("is {v:?}"),
                        fix: "use true or false (also 1/0, yes/no, on/off)",
                    })
                }
            };
        }
        if let Some(v) = get("GATEWATCH_LOG") {
            self.log = v;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: String, fix| Err(ConfigError::Invalid { key, problem, fix });
        self.broker(None)?;
        self.metrics_addr()?;
        self.networks()?;
        self.mode()?;
        self.prevent_config(&[])?;
        match self.source.kind {
            SourceKind::Interface if self.source.interface.as_deref().is_none_or(str::is_empty) => {
                return invalid(
                    "source.interface",
                    "is missing while source.kind = \"interface\"".into(),
                    "name the interface to capture from, e.g. \"eth0\"",
                )
            }
            SourceKind::Pcap if self.source.pcap.is_none() => {
                return invalid(
                    "source.pcap",
                    "is missing while source.kind = \"pcap\"".into(),
                    "give the capture file to replay",
                )
            }
            _ => {}
        }
        if !(self.source.replay_speed.is_finite() && self.source.replay_speed > 0.0) {
            return invalid(
                "source.replay_speed",
                format!("is {}", self.source.replay_speed),
                "use a number above 0",
            );
        }
        if !(0.0..=1.0).contains(&self.source.simulator_intensity) {
            return invalid(
                "source.simulator_intensity",
                format!("is {}", self.source.simulator_intensity),
                "use a number from 0 to 1",
            );
        }
        if self.source.attack_every_secs < 20 {
            return invalid(
                "source.attack_every_secs",
                format!("is {}", self.source.attack_every_secs),
                "use 20 or more (each cycle needs room for benign traffic)",
            );
        }
        if let Err(problem) = self.fl.families() {
            return invalid(
                "fl.synth_families",
                problem,
                "use family names the simulator makes: scan, dos_ddos, brute_force, slow_rate, botnet_c2, exfiltration, web_attack",
            );
        }
        if !(0.0..0.9).contains(&self.fl.validation_fraction) {
            return invalid(
                "fl.validation_fraction",
                format!("is {}", self.fl.validation_fraction),
                "use a number from 0 to 0.9",
            );
        }
        if self.fl.max_windows == 0 || self.fl.max_train_seconds == 0 {
            return invalid("fl.max_windows", "or fl.max_train_seconds is 0".into(), "use 1 or more");
        }
        if self.hub.heartbeat_secs == 0 || self.hub.heartbeat_secs > 3600 {
            return invalid(
                "hub.heartbeat_secs",
                format!("is {}", self.hub.heartbeat_secs),
                "use 1-3600",
            );
        }
        for (key, value) in [
            ("detect.batch", self.detect.batch),
            ("uplink.batch_max", self.uplink.batch_max),
            ("uplink.in_flight", self.uplink.in_flight),
        ] {
            if value == 0 {
                return invalid(key, "is 0".into(), "use 1 or more");
            }
        }
        if self.spool.segment_bytes < 4096 || self.spool.max_bytes < self.spool.segment_bytes {
            return invalid(
                "spool.max_bytes",
                format!(
                    "is {} with spool.segment_bytes {}",
                    self.spool.max_bytes, self.spool.segment_bytes
                ),
                "keep segment_bytes >= 4096 and max_bytes >= segment_bytes",
            );
        }
        Ok(())
    }

    /// The broker: `hub.mqtt_url` if set, else the one the hub named at enrollment, else the
    /// local default.
    pub fn broker(&self, enrolled: Option<&str>) -> Result<BrokerUrl, ConfigError> {
        let url = self.hub.mqtt_url.as_deref().or(enrolled).unwrap_or(DEFAULT_MQTT_URL);
        gatewatch_proto::fleet::parse_broker_url(url).map_err(|problem| ConfigError::Invalid {
            key: "hub.mqtt_url",
            problem,
            fix: "use mqtts://HOST:8883 (the hub's own broker) or mqtt://HOST:1883 (an external one)",
        })
    }

    /// Where the metrics endpoint listens; `None` when it is off.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.metrics_listen.trim() == "off" {
            return Ok(None);
        }
        self.metrics_listen
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "metrics_listen",
                problem: format!("is {:?}", self.metrics_listen),
                fix: "give ADDRESS:PORT such as 127.0.0.1:9477, or \"off\"",
            })
    }

    pub fn networks(&self) -> Result<Vec<Network>, ConfigError> {
        self.detect
            .devices
            .iter()
            .map(|d| {
                d.parse::<Network>().map_err(|_| ConfigError::Invalid {
                    key: "detect.devices",
                    problem: format!("holds {d:?}, which is not a network"),
                    fix: "write networks in CIDR form, e.g. \"192.168.1.0/24\" or \"fd00::/8\"",
                })
            })
            .collect()
    }

    /// How prevention runs; `hub_hosts` (names or addresses of the hub) are resolved and
    /// protected with the configured networks.
    pub fn prevent_config(&self, hub_hosts: &[&str]) -> Result<crate::prevent::PreventConfig, ConfigError> {
        let mut protected = Vec::new();
        for p in &self.prevent.protected {
            protected.push(p.parse::<Network>().map_err(|_| ConfigError::Invalid {
                key: "prevent.protected",
                problem: format!("holds {p:?}, which is not a network"),
                fix: "write addresses or networks in CIDR form, e.g. \"10.0.0.0/24\"",
            })?);
        }
        for host in hub_hosts {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)) {
                Ok(addrs) => protected.extend(addrs.filter_map(|a| a.ip().to_string().parse::<Network>().ok())),
                Err(e) => tracing::warn!(%host, error = %e, "cannot resolve the hub to protect its addresses"),
            }
        }
        let nft: Vec<String> = self.prevent.nft.split_whitespace().map(str::to_string).collect();
        if nft.is_empty() {
            return Err(ConfigError::Invalid {
                key: "prevent.nft",
                problem: "is empty".into(),
                fix: "name the nft program, e.g. \"nft\" or \"/usr/sbin/nft\"",
            });
        }
        Ok(crate::prevent::PreventConfig {
            enforce: self.prevent.enforce,
            protected,
            nft,
        })
    }

    pub fn mode(&self) -> Result<Mode, ConfigError> {
        self.flow.mode.parse::<Mode>().map_err(|_| ConfigError::Invalid {
            key: "flow.mode",
            problem: format!("is {:?}", self.flow.mode),
            fix: "use \"correct\" or \"cic2017\"",
        })
    }

    pub fn spool_config(&self) -> SpoolConfig {
        SpoolConfig {
            max_bytes: self.spool.max_bytes,
            segment_bytes: self.spool.segment_bytes,
            fsync: self.spool.fsync,
            when_full: self.spool.when_full,
        }
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.detect.max_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_example_shows_them() {
        AgentConfig::default().validate().expect("defaults are valid");
        let example = include_str!("../gatewatch-agent.example.toml");
        let parsed: AgentConfig = toml::from_str(example).expect("the example parses");
        assert_eq!(parsed, AgentConfig::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        type Tweak = fn(&mut AgentConfig);
        let cases: Vec<(&str, Tweak)> = vec![
            ("hub.mqtt_url", |c| c.hub.mqtt_url = Some("http://x".into())),
            ("hub.mqtt_url", |c| c.hub.mqtt_url = Some("mqtt://host:99999".into())),
            ("detect.devices", |c| c.detect.devices = vec!["10.0.0.0/40".into()]),
            ("source.interface", |c| c.source.kind = SourceKind::Interface),
            ("source.pcap", |c| c.source.kind = SourceKind::Pcap),
            ("flow.mode", |c| c.flow.mode = "fast".into()),
            ("uplink.in_flight", |c| c.uplink.in_flight = 0),
            ("metrics_listen", |c| c.metrics_listen = "9477".into()),
            ("spool.max_bytes", |c| c.spool.max_bytes = 1),
            ("prevent.protected", |c| c.prevent.protected = vec!["management".into()]),
            ("prevent.nft", |c| c.prevent.nft = " ".into()),
            ("fl.synth_families", |c| c.fl.synth_families = vec!["iot_flood".into()]),
            ("fl.synth_families", |c| c.fl.synth_families = vec!["port_scan".into()]),
            ("fl.validation_fraction", |c| c.fl.validation_fraction = 0.95),
        ];
        for (key, tweak) in cases {
            let mut c = AgentConfig::default();
            tweak(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn no_networks_means_the_devices_come_from_the_hub() {
        let mut c = AgentConfig::default();
        c.detect.devices.clear();
        c.validate().expect("an agent may watch only what the hub starts");
        assert!(c.networks().expect("valid").is_empty());
    }

    #[test]
    fn the_hubs_addresses_are_protected_with_the_configured_networks() {
        let mut c = AgentConfig::default();
        c.prevent.protected = vec!["10.9.0.0/16".into()];
        let p = c.prevent_config(&["127.0.0.1", "[::1]"]).expect("valid");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert!(p.protected.iter().any(|n| n.contains(ip("10.9.3.4"))));
        assert!(p.protected.iter().any(|n| n.contains(ip("::1"))));
        assert!(!p.protected.iter().any(|n| n.contains(ip("10.8.0.1"))));
        assert_eq!(p.nft, ["nft"]);
        assert!(!p.enforce, "dry run by default");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let mut c = AgentConfig::default();
        c.apply_env(|k| match k {
            "GATEWATCH_HUB_MQTT_URL" => Some("mqtt://10.0.0.1:8883".into()),
            "GATEWATCH_DEVICES" => Some("10.1.0.0/16, 10.2.0.0/16".into()),
            _ => None,
        })
        .expect("valid overrides");
        let broker = c.broker(Some("mqtts://enrolled:8883")).expect("valid");
        assert_eq!(
            (broker.host.as_str(), broker.port, broker.tls),
            ("10.0.0.1", 8883, false)
        );
        let enrolled = AgentConfig::default()
            .broker(Some("mqtts://hub.example:8883"))
            .expect("valid");
        assert_eq!((enrolled.host.as_str(), enrolled.tls), ("hub.example", true));
        assert_eq!(
            AgentConfig::default().broker(None).expect("valid").to_string(),
            DEFAULT_MQTT_URL
        );
        assert_eq!(c.detect.devices, ["10.1.0.0/16", "10.2.0.0/16"]);
        c.apply_env(|k| (k == "GATEWATCH_PREVENT_ENFORCE").then(|| "true".into()))
            .expect("valid");
        assert!(c.prevent.enforce);
        c.apply_env(|k| (k == "GATEWATCH_PREVENT_ENFORCE").then(|| "Off".into()))
            .expect("valid");
        assert!(!c.prevent.enforce);
        let unknown = toml::from_str::<AgentConfig>("[hub]\nmqtt = \"x\"\n").expect_err("unknown key");
        assert!(unknown.to_string().contains("mqtt"), "{unknown}");
    }

    #[test]
    fn invalid_environment_values_are_errors_not_fallbacks() {
        for (key, value, allowed) in [
            ("GATEWATCH_SOURCE", "pcapng", "interface, pcap or simulator"),
            ("GATEWATCH_SOURCE", "", "interface, pcap or simulator"),
            ("GATEWATCH_PREVENT_ENFORCE", "enforce", "true or false"),
            ("GATEWATCH_PREVENT_ENFORCE", "ture", "true or false"),
        ] {
            let mut c = AgentConfig::default();
            let e = c
                .apply_env(|k| (k == key).then(|| value.to_string()))
                .expect_err("an invalid value is refused");
            let text = e.to_string();
            assert!(text.contains(key) && text.contains(allowed), "{text}");
            assert_eq!(c.source.kind, SourceKind::Simulator, "nothing changed for {key}");
            assert!(!c.prevent.enforce);
        }
        let mut c = AgentConfig::default();
        c.apply_env(|k| (k == "GATEWATCH_SOURCE").then(|| " interface ".into()))
            .expect("valid");
        assert_eq!(c.source.kind, SourceKind::Interface);
    }
}
