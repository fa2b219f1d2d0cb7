//! Federated learning between the hub and its agents: the orders the hub sends on the command
//! channel, the messages agents send back over QUIC, and what an agent signs with its
//! enrollment key so that the hub can relay but not forge them.
//!
//! A run has a key committee of agents (seats 1..=n, threshold t) that make the collective
//! CKKS key (`gatewatch-ckks`). Members exchange their Shamir shares through the hub, each
//! sealed with HPKE (RFC 9180) to the recipient's per-epoch key and signed by the sender; the
//! per-epoch key itself is announced in a [`MemberHello`] signed with the member's enrollment
//! key, whose certificate (from the hub's CA, CN = agent id) travels with it. Clients sign
//! the receipt of every update they upload, and committee members decrypt an aggregate only
//! with enough validly signed receipts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The HPKE suite members seal Shamir shares with: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20-Poly1305 (RFC 9180 ids 0x0020, 0x0001, 0x0003).
pub const HPKE_SUITE: &str = "X25519-HKDF-SHA256/HKDF-SHA256/ChaCha20Poly1305";

/// A seat on the key committee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seat {
    /// 1..=n, the member's Shamir index.
    pub member: u8,
    pub agent_id: Uuid,
}

/// Hub → committee member: make this epoch's key share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeygenOrder {
    pub run_id: Uuid,
    pub epoch: u64,
    /// `gatewatch-ckks` parameter set name (`gw-8192`, …).
    pub params: String,
    pub threshold: u8,
    /// Every seat of the committee; the receiving agent finds its own.
    pub seats: Vec<Seat>,
    /// The common random polynomial's seed, hex.
    pub crp_seed: String,
    /// A member decrypts no aggregate of fewer updates than this.
    pub min_contributions: u32,
}

/// Hub → client: train one round (zero `local_epochs`: only measure, and answer with
/// `FlEvaluated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOrder {
    pub run_id: Uuid,
    pub round: u64,
    pub epoch: u64,
    /// The global model to start from (downloaded over QUIC if missing).
    pub model_version: String,
    pub local_epochs: u32,
    pub learning_rate: f64,
    pub batch_size: u32,
    /// Uploads after this (milliseconds since the Unix epoch) are refused.
    pub deadline_ms: i64,
    /// The update's L2 norm is clipped to this.
    pub clip_norm: f32,
    /// The update's weight (local training windows) is capped at this.
    pub max_weight: u32,
    /// The active model, to measure beside the global one on the local validation set
    /// (`activate = if_better`: the global model replaces it only if it is no worse).
    #[serde(default)]
    pub compare_with: Option<String>,
}

/// Hub → committee member: fetch the round's decryption request over QUIC and answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptOrder {
    pub run_id: Uuid,
    pub epoch: u64,
    pub round: u64,
}

/// Hub → agent: an operator's verdict on an alert, for the agent's local training set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOrder {
    /// The alert's windows: device and the window's last flow end.
    pub windows: Vec<LabelledWindow>,
    /// `benign` (a false positive) or the attack family confirmed.
    pub family: String,
}

/// A window the agent scored, by device and its last flow's end (milliseconds since the Unix
/// epoch), as the hub stored its prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledWindow {
    pub device: std::net::IpAddr,
    pub end_ms: i64,
}

/// A committee member's announcement of its HPKE key for one epoch, signed with its
/// enrollment key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHello {
    pub run_id: Uuid,
    pub epoch: u64,
    pub member: u8,
    pub agent_id: Uuid,
    /// X25519 public key, hex.
    pub hpke_public: String,
    /// The member's certificate (DER, hex): its public key checks `signature`.
    pub cert: String,
    /// ECDSA P-256 SHA-256 (ASN.1) over [`MemberHello::signed_bytes`], hex.
    pub signature: String,
}

impl MemberHello {
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = b"gatewatch-fl/hello/v1".to_vec();
        v.extend_from_slice(self.run_id.as_bytes());
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.push(self.member);
        v.extend_from_slice(self.agent_id.as_bytes());
        v.extend_from_slice(self.hpke_public.as_bytes());
        v
    }
}

/// A Shamir share sealed by `from` to `to` (HPKE base mode, `info` = [`SealedShare::info`]),
/// signed by the sender's enrollment key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedShare {
    pub epoch: u64,
    pub from: u8,
    pub to: u8,
    /// HPKE encapsulated key, hex.
    pub enc: String,
    /// HPKE ciphertext of the share's wire bytes, hex.
    pub ciphertext: String,
    /// Sender's signature over [`SealedShare::signed_bytes`], hex.
    pub signature: String,
}

impl SealedShare {
    /// HPKE `info`: binds the sealing to the epoch and both seats.
    pub fn info(epoch: u64, from: u8, to: u8) -> Vec<u8> {
        let mut v = b"gatewatch-fl/shamir/v1".to_vec();
        v.extend_from_slice(&epoch.to_le_bytes());
        v.push(from);
        v.push(to);
        v
    }

    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = b"gatewatch-fl/sealed/v1".to_vec();
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.push(self.from);
        v.push(self.to);
        v.extend_from_slice(self.enc.as_bytes());
        v.push(0);
        v.extend_from_slice(self.ciphertext.as_bytes());
        v
    }
}

/// What a client measured on its local validation set, before and after training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evaluation {
    pub windows: u32,
    pub loss: f64,
    pub accuracy: f64,
    /// Attack-vs-benign F1.
    pub f1: f64,
    /// Recall of each attack family present (by the score head).
    pub recall: BTreeMap<String, f64>,
}

/// A client's plaintext report of a round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientMetrics {
    /// Training windows (the update's weight before the cap).
    pub samples: u32,
    pub validation_windows: u32,
    pub before: Evaluation,
    pub after: Evaluation,
    pub train_seconds: f64,
    /// The encrypted update's size.
    pub upload_bytes: u64,
    /// The local set: windows per family (train and validation).
    pub composition: BTreeMap<String, u32>,
    /// The figures of the order's `compare_with` model on the same windows.
    #[serde(default)]
    pub compared: Option<Evaluation>,
}

/// Errors of the signature checks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("not hex: {0}")]
    Hex(&'static str),
    #[error("the certificate is not valid DER X.509")]
    Certificate,
    #[error("the certificate names {named:?}, not agent {expected}")]
    WrongAgent { named: String, expected: Uuid },
    #[error("the signature does not verify")]
    Invalid,
}

/// Hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of hex (lower or upper case).
pub fn from_hex(s: &str, what: &'static str) -> Result<Vec<u8>, SignatureError> {
    if s.len() % 2 != 0 {
        return Err(SignatureError::Hex(what));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or(SignatureError::Hex(what))
        })
        .collect()
}

/// Checks `signature` (ECDSA P-256 SHA-256, ASN.1) over `message` with the key of `cert`,
/// which must name `agent` (CN). Whether the certificate chains to the hub's CA is the
/// caller's check (an agent checks it against its CA; the hub saw it in the TLS handshake).
pub fn verify_signed(cert: &[u8], agent: Uuid, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|_| SignatureError::Certificate)?;
    let named = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    if named != agent.to_string() {
        return Err(SignatureError::WrongAgent { named, expected: agent });
    }
    let key = parsed.public_key().subject_public_key.data.as_ref();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001ABff", "x").expect("hex"), bytes);
        assert!(from_hex("abc", "x").is_err());
        assert!(from_hex("zz", "x").is_err());
        assert!(from_hex("é1", "x").is_err());
    }

    #[test]
    fn signed_bytes_bind_every_field() {
        let hello = MemberHello {
            run_id: Uuid::nil(),
            epoch: 1,
            member: 2,
            agent_id: Uuid::nil(),
            hpke_public: "aa".into(),
            cert: String::new(),
            signature: String::new(),
        };
        let other_member = MemberHello {
            member: 3,
            ..hello.clone()
        };
        let other_key = MemberHello {
            hpke_public: "ab".into(),
            ..hello.clone()
        };
        assert_ne!(hello.signed_bytes(), other_member.signed_bytes());
        assert_ne!(hello.signed_bytes(), other_key.signed_bytes());
        assert_ne!(SealedShare::info(1, 1, 2), SealedShare::info(1, 2, 1));
    }

    #[test]
    fn garbage_certificates_do_not_verify() {
        assert_eq!(
            verify_signed(b"not a certificate", Uuid::nil(), b"m", b"s"),
            Err(SignatureError::Certificate)
        );
    }
}
