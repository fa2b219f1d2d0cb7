//! The fleet link's bulk channel: QUIC with mutual TLS, ALPN [`ALPN`], one bidirectional
//! stream per request. Each message is a frame: a 4-byte big-endian length, then JSON. A
//! model download is followed on the same stream by the files' bytes, in the order listed;
//! a capture download by the capture's bytes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ALPN: &[u8] = b"gatewatch/1";
/// Largest JSON frame either side accepts.
pub const MAX_FRAME: usize = 16 << 20;
/// Flow records per upload request at most.
pub const MAX_FLOWS_PER_REQUEST: usize = 5_000;

/// Agent → hub, the first frame of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The files of the hub's active model, which must be `version`.
    Model { version: String },
    /// Flow records of monitored devices, for the hub's traffic log.
    Flows { records: Vec<FlowUpload> },
    /// A capture an operator uploaded for one of this agent's devices, to replay.
    Capture { upload_id: Uuid },
    /// FL: a committee member announces its HPKE key for the epoch.
    FlHello { hello: crate::fl::MemberHello },
    /// FL: every member's announcement for the epoch, once all have come.
    FlCommittee { run_id: Uuid, epoch: u64 },
    /// FL: a member's public key share (its `len` wire bytes follow) and its sealed Shamir
    /// shares for the other members.
    FlKeyShares {
        run_id: Uuid,
        epoch: u64,
        member: u8,
        sealed: Vec<crate::fl::SealedShare>,
        len: u64,
    },
    /// FL: the sealed Shamir shares for `member`, once every other member has sent its own.
    FlSealed { run_id: Uuid, epoch: u64, member: u8 },
    /// FL: this member holds its share of the epoch's key (stored: it survives a restart).
    FlKeyReady { run_id: Uuid, epoch: u64, member: u8 },
    /// FL: the epoch's collective public key (wire bytes follow the answer).
    FlPublicKey { run_id: Uuid, epoch: u64 },
    /// FL: an encrypted update (its `len` wire bytes follow), its signed receipt and the
    /// client's plaintext metrics.
    FlUpdate {
        run_id: Uuid,
        round: u64,
        receipt: gatewatch_ckks::ContributionReceipt,
        metrics: crate::fl::ClientMetrics,
        len: u64,
    },
    /// FL: a client's figures for an evaluation-only round.
    FlEvaluated {
        run_id: Uuid,
        round: u64,
        metrics: crate::fl::ClientMetrics,
    },
    /// FL: the client could not take part in the round, and why.
    FlDeclined { run_id: Uuid, round: u64, reason: String },
    /// FL: the round's decryption request (wire bytes follow the answer).
    FlDecryption { run_id: Uuid, epoch: u64, round: u64 },
    /// FL: a member's decryption share (its `len` wire bytes follow).
    FlDecryptionShare {
        run_id: Uuid,
        epoch: u64,
        round: u64,
        member: u8,
        len: u64,
    },
}

/// Largest raw payload after an FL frame.
pub const MAX_FL_BYTES: u64 = 64 << 20;

/// One completed flow of a monitored device, as the hub stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowUpload {
    /// Made at the agent (UUIDv7): a re-sent record is stored once.
    pub id: Uuid,
    pub device: IpAddr,
    /// The flow's start, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The 78 features in schema order.
    pub features: Vec<f32>,
    pub source: FlowSource,
}

/// Where the agent's packets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowSource {
    Live,
    Pcap,
    Simulated,
    /// Flows of an attack-simulation session: simulated attack traffic aimed at a real device.
    AttackSim,
}

impl FlowSource {
    /// The hub's `traffic_logs.source_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowSource::Live => "live",
            FlowSource::Pcap => "pcap",
            FlowSource::Simulated => "simulated",
            FlowSource::AttackSim => "attack_sim",
        }
    }
}

/// Hub → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The model's files follow, raw, in this order.
    Model {
        version: String,
        files: Vec<ModelFile>,
    },
    /// Flow records stored (re-sent ones count as stored).
    Stored {
        count: u64,
    },
    /// The capture's bytes follow, raw.
    Capture {
        len: u64,
        sha256: String,
    },
    Error {
        message: String,
    },
    /// Accepted.
    Ok,
    /// Raw bytes follow.
    Blob {
        len: u64,
        sha256: String,
    },
    /// Every committee member's announcement for the epoch.
    FlCommittee {
        hellos: Vec<crate::fl::MemberHello>,
    },
    /// The sealed shares for the asking member.
    FlSealed {
        shares: Vec<crate::fl::SealedShare>,
    },
    /// The decryption request's wire bytes follow; `certs` are the certificates (DER, hex)
    /// of the agents whose receipts it holds, to check their signatures.
    FlDecryption {
        len: u64,
        certs: std::collections::BTreeMap<Uuid, String>,
    },
    /// Not yet: ask again later.
    NotReady {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// A plain file name (`model.onnx`, `scaler.json`, `metadata.json`).
    pub name: String,
    pub len: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

impl ModelFile {
    /// Only plain names: a file list must not write outside the model directory.
    pub fn name_is_safe(&self) -> bool {
        !self.name.is_empty()
            && self.name.len() <= 64
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame is not a valid message: {0}")]
    Invalid(String),
}

/// A message as a frame.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let json = serde_json::to_vec(message).unwrap_or_default();
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    frame
}

/// The length a frame's prefix announces, if acceptable.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// A frame's body as a message.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let request = Request::Model { version: "v2".into() };
        let frame = encode(&request);
        let len = frame_len(frame[..4].try_into().expect("prefix")).expect("fits");
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode::<Request>(&frame[4..]).expect("decodes"), request);
        assert_eq!(frame_len([0xff, 0, 0, 0]), Err(FrameError::TooLarge(0xff00_0000)));
        assert!(decode::<Request>(b"{\"type\":\"shell\"}").is_err());
    }

    #[test]
    fn model_file_names_stay_inside_the_directory() {
        let file = |name: &str| ModelFile {
            name: name.into(),
            len: 1,
            sha256: String::new(),
        };
        assert!(file("model.onnx").name_is_safe());
        for bad in ["../etc/passwd", "a/b", "", ".hidden", "x y"] {
            assert!(!file(bad).name_is_safe(), "{bad}");
        }
    }
}
