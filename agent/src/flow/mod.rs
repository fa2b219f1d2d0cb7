//! Flows: packets grouped by bidirectional 5-tuple into flows with the 78
//! CIC-IDS2017 features, in two modes (correct semantics, or the 2017 dataset's quirks).

pub mod label;
pub mod state;
pub mod stats;
pub mod table;

use serde::{Deserialize, Serialize};

pub use table::{FlowTable, TableStats};

/// Which feature semantics to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// CICFlowMeter's definitions as documented.
    #[default]
    Correct,
    /// The quirks Q1–Q10 of the published CIC-IDS2017 CSVs, for models trained on them.
    Cic2017,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "correct" => Ok(Mode::Correct),
            "cic2017" => Ok(Mode::Cic2017),
            other => Err(format!(
                "unknown feature mode {other:?}: use \"correct\" or \"cic2017\""
            )),
        }
    }
}

/// Flow table settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    pub mode: Mode,
    /// A flow ends this long after its first packet (CICFlowMeter: 120 s).
    pub flow_timeout_ns: i64,
    /// In `correct` mode a flow with no close of its own (UDP, ICMP, anything but TCP) ends
    /// after this long without a packet, as NetFlow's inactive timeout ends it; 0 turns it
    /// off. Without it a request/response exchange waits out the whole flow timeout, so its
    /// flow reaches the detector two minutes late, among flows that happened then.
    /// CICFlowMeter has none, so `cic2017` ignores it.
    pub idle_timeout_ns: i64,
    /// How long a closed TCP connection waits for its last ACKs (`correct` mode).
    pub close_linger_ns: i64,
    /// Flows with fewer packets are not emitted in `correct` mode; `cic2017` always uses 2.
    pub min_packets: u32,
    /// Live flows kept at most; the oldest is emitted early when a new one needs room.
    pub max_live_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            mode: Mode::Correct,
            flow_timeout_ns: 120_000_000_000,
            idle_timeout_ns: 15_000_000_000,
            close_linger_ns: 1_000_000_000,
            min_packets: 1,
            max_live_flows: 262_144,
        }
    }
}

impl FlowConfig {
    pub fn with_mode(mode: Mode) -> Self {
        FlowConfig {
            mode,
            ..FlowConfig::default()
        }
    }

    /// The idle timeout for connectionless flows, if this mode uses one.
    pub fn idle_timeout_ns(&self) -> Option<i64> {
        (self.mode == Mode::Correct && self.idle_timeout_ns > 0).then_some(self.idle_timeout_ns)
    }

    /// Packets a flow needs to be emitted.
    pub fn min_packets(&self) -> u32 {
        match self.mode {
            Mode::Correct => self.min_packets.max(1),
            // CICFlowMeter never writes single-packet flows.
            Mode::Cic2017 => 2,
        }
    }
}

#[cfg(test)]
mod tests;
