//! Typed errors.

use thiserror::Error;

/// Everything that can go wrong in this crate. No operation panics on bad input; it returns one of these.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// More values than a ciphertext has real slots.
    #[error("{got} values do not fit in one ciphertext of {max} real slots")]
    TooManyValues { got: usize, max: usize },
    /// NaN or infinity in the input.
    #[error("input contains a non-finite value")]
    NonFinite,
    /// A (weighted) value exceeds what the parameter set decodes correctly.
    #[error("value {value} exceeds the encodable bound {max}")]
    ValueTooLarge { value: f64, max: f64 },
    /// Objects from different parameter sets were combined.
    #[error("parameter set mismatch")]
    ParamMismatch,
    /// Objects from different key epochs were combined.
    #[error("epoch mismatch: expected {expected}, got {got}")]
    EpochMismatch { expected: u64, got: u64 },
    /// Objects of different shapes (vector length, ciphertext count, scale, round) were combined.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(&'static str),
    /// A weight of zero, or a total weight overflow.
    #[error("invalid weight: {0}")]
    InvalidWeight(&'static str),
    /// A committee configuration or member id is invalid.
    #[error("invalid committee: {0}")]
    InvalidCommittee(&'static str),
    /// The committee key material is incomplete or inconsistent.
    #[error("key generation: {0}")]
    KeyGen(&'static str),
    /// A member refused to produce a decryption share.
    #[error("decryption refused: {0}")]
    Refused(&'static str),
    /// Decryption shares do not fit together or do not belong to this ciphertext.
    #[error("cannot combine decryption shares: {0}")]
    Combine(&'static str),
    /// Bytes that are not a valid encoding.
    #[error("malformed encoding: {0}")]
    Decode(&'static str),
    /// A wire-format version this build does not understand.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// The operating system's random source failed.
    #[error("random source failed")]
    Rng,
}
