//! What the agent says about one window of a device's flows.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The verdict of the model on one device's window of 10 consecutive completed flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The monitored device the window belongs to.
    pub device: IpAddr,
    pub window: WindowSpan,
    /// Attack probability, 0..=1.
    pub score: f32,
    /// `benign` or `attack` (score against the model's threshold).
    pub label: String,
    /// `|score − 0.5|·2`: 0 undecided, 1 certain.
    pub confidence: f32,
    /// The most probable family (`benign`, `scan`, `dos_ddos`, …).
    pub family: String,
    /// Probability of every family the model knows, by name.
    pub family_probs: std::collections::BTreeMap<String, f32>,
    pub model_version: String,
    /// Wall time of the tract run that scored this window (shared by its batch).
    pub inference_latency_ms: f64,
    /// The address most of the window's flows have at their other end (the suspected
    /// attacker or command server of an attack window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    /// Rows of the window that are padding: a device with fewer than 10 flows is scored on
    /// a partial window once it goes quiet (0, and absent from JSON, for a full window).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub padded_flows: u8,
    /// Set when the window holds flows of an attack-simulation session: it is a test, not
    /// an attack on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<SimulationMark>,
}

/// Which attack-simulation step a window's simulated flows belong to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimulationMark {
    pub session_id: uuid::Uuid,
    /// 1-based step of the session (the latest step among the window's flows).
    pub step: u32,
    /// Adversarial steps: the score of the window before the FGSM perturbation (`score` is
    /// the perturbed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_score: Option<f32>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Detection {
    pub fn is_attack(&self) -> bool {
        self.label == "attack"
    }
}

/// The flows a window covers: ids given by the extractor and packet times in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpan {
    pub first_flow_id: u64,
    pub last_flow_id: u64,
    /// First packet of the oldest flow.
    pub first_ts_ns: i64,
    /// Last packet of any flow in the window.
    pub last_ts_ns: i64,
}
