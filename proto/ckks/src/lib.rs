//! `gatewatch-ckks`: the cryptography of gatewatch's secure federated-learning aggregation.
//!
//! Agents encrypt model updates with RNS-CKKS under a *collective* public key held t-of-n by a key
//! committee of agents; the hub only adds ciphertexts, and any `t` committee members jointly decrypt the
//! *sum* (never a single update) with smudged decryption shares. Pure computation, no I/O: the
//! protocol messages are plain values with a compact binary wire format ([`wire`]).
//!
//! See `SECURITY.md` beside this crate for the threat model, parameters and noise bounds.
//!
//! ```
//! use gatewatch_ckks::*;
//! # fn main() -> Result<(), Error> {
//! let mut rng = os_rng()?;
//! let config = CommitteeConfig::new(ParamSetId::Gw4096, 1, 3, 2, [7u8; 32])?;
//! let keygen: Vec<MemberKeygen> =
//!     (1..=3).map(|i| MemberKeygen::new(&config, i, &mut rng)).collect::<Result<_, _>>()?;
//! let shares: Vec<PublicKeyShare> = keygen.iter().map(|m| m.public_share()).collect();
//! let pk = collective_public_key(&config, &shares)?;
//! let mut members = Vec::new();
//! for m in keygen.iter() {
//!     let mine: Vec<ShamirShare> = keygen.iter().map(|k| k.share_for(m.id())).collect::<Result<_, _>>()?;
//!     members.push(mine);
//! }
//! let mut members: Vec<CommitteeMember> =
//!     keygen.into_iter().zip(members).map(|(k, s)| k.finish(&s, 2)).collect::<Result<_, _>>()?;
//!
//! let mut agg = Aggregate::new(ParamSetId::Gw4096, 1, 42, 3)?;
//! let a = encrypt_update(&pk, &[1.0, 2.0, 3.0], 10)?;
//! let b = encrypt_update(&pk, &[3.0, 2.0, 1.0], 30)?;
//! agg.add(&a)?;
//! agg.add(&b)?;
//! let receipts = vec![a.receipt(42, "agent-a"), b.receipt(42, "agent-b")];
//! let req = agg.decryption_request(receipts, 2, &[1, 3]);
//! let s1 = members[0].partial_decrypt(&req, &mut rng)?;
//! let s3 = members[2].partial_decrypt(&req, &mut rng)?;
//! let avg = agg.combine(&[s1, s3])?;
//! assert!((avg[0] - 2.5).abs() < 1e-5 && (avg[2] - 1.5).abs() < 1e-5);
//! # Ok(()) }
//! ```

mod aggregate;
mod arith;
mod ckks;
mod encoding;
mod error;
mod multiparty;
mod ntt;
mod params;
mod poly;
mod sampling;
pub mod wire;

pub use aggregate::{combine, encrypt_update, encrypt_update_with_rng, Aggregate, EncryptedUpdate};
pub use arith::is_prime_u64;
pub use ckks::{decrypt, encrypt, os_rng, Ciphertext, PublicKey, SecretKey};
pub use error::Error;
pub use multiparty::{
    collective_public_key, CommitteeConfig, CommitteeMember, ContributionReceipt, DecryptionRequest, DecryptionShare,
    MemberKeygen, PublicKeyShare, ShamirShare, MAX_CHUNKS, MAX_COMMITTEE,
};
pub use params::{he_standard_max_log_q, Context, ParamSetId, GAUSS_BOUND, SIGMA, SMUDGING_LAMBDA};
pub use wire::WireFormat;

#[doc(hidden)]
/// Internals exposed for the statistical tests and the benchmark; not a stable API.
pub mod testing {
    use crate::ckks::Ciphertext;

    /// The raw residues `(c0, c1)` of a ciphertext (prime-major, coefficient form).
    pub fn ciphertext_residues(ct: &Ciphertext) -> (&[u64], &[u64]) {
        (&ct.c0, &ct.c1)
    }

    /// A fresh ternary secret's coefficients (as the key generator samples them).
    pub fn sample_ternary<R: rand_core::RngCore>(rng: &mut R, n: usize) -> Vec<i64> {
        crate::sampling::ternary(rng, n)
    }
}
