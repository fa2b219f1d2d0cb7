//! The FedAvg-shaped API: agents encrypt weighted updates, the hub adds them, `t` committee members
//! decrypt the sum, the hub combines the shares into the weighted average.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::ckks::{decrypt, encrypt_encoded, os_rng, Ciphertext, PublicKey, SecretKey};
use crate::encoding::{decode, encode};
use crate::error::Error;
use crate::multiparty::{
    aggregate_digest, sum_shares, ContributionReceipt, DecryptionRequest, DecryptionShare, MAX_CHUNKS,
};
use crate::params::ParamSetId;
use crate::poly;
use crate::wire::WireFormat;

/// One agent's model update: `weight · values` followed by `weight` itself (an integrity canary the
/// combiner checks against the total weight), chunked into ciphertexts of `N` reals each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedUpdate {
    pub(crate) params: ParamSetId,
    pub(crate) epoch: u64,
    pub(crate) weight: u32,
    pub(crate) len: u32,
    pub(crate) cts: Vec<Ciphertext>,
}

impl EncryptedUpdate {
    /// Parameter set.
    pub fn params(&self) -> ParamSetId {
        self.params
    }
    /// Key epoch of the public key it was made with.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The weight (sample count) the values were multiplied by.
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// True if it holds no parameters (never, for a constructed update).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of ciphertexts.
    pub fn ciphertexts(&self) -> &[Ciphertext] {
        &self.cts
    }
    /// SHA-256 of the wire encoding: what a [`ContributionReceipt`] names.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
    /// A receipt for this update (unsigned; the agent signs [`ContributionReceipt::signed_bytes`]).
    pub fn receipt(&self, round: u64, agent_id: &str) -> ContributionReceipt {
        ContributionReceipt {
            epoch: self.epoch,
            round,
            agent_id: agent_id.to_owned(),
            update_digest: self.digest(),
            weight: self.weight,
            signature: Vec::new(),
        }
    }
}

/// Encrypts `weight · values` under `pk` with randomness from the operating system.
pub fn encrypt_update(pk: &PublicKey, values: &[f32], weight: u32) -> Result<EncryptedUpdate, Error> {
    let mut rng = os_rng()?;
    encrypt_update_with_rng(pk, values, weight, &mut rng)
}

/// Encrypts `weight · values` under `pk`.
pub fn encrypt_update_with_rng<R: RngCore + CryptoRng>(
    pk: &PublicKey,
    values: &[f32],
    weight: u32,
    rng: &mut R,
) -> Result<EncryptedUpdate, Error> {
    let ctx = pk.params.context();
    if weight == 0 {
        return Err(Error::InvalidWeight("weight must be positive"));
    }
    if values.is_empty() || values.len() >= ctx.n * MAX_CHUNKS || values.len() >= u32::MAX as usize {
        return Err(Error::ShapeMismatch("update length out of range"));
    }
    let w = weight as f64;
    let mut m = vec![0u64; 2 * ctx.n];
    let mut scaled = Vec::with_capacity(ctx.n);
    // The values, then the weight itself in slot `len` (the integrity canary).
    let total = values.len() + 1;
    let mut cts = Vec::with_capacity(total.div_ceil(ctx.n));
    for start in (0..total).step_by(ctx.n) {
        scaled.clear();
        let end = (start + ctx.n).min(total);
        scaled.extend((start..end).map(|i| values.get(i).map_or(w, |&v| v as f64 * w)));
        encode(ctx, &scaled, ctx.log_scale, &mut m)?;
        cts.push(encrypt_encoded(ctx, pk, &m, ctx.log_scale, rng));
    }
    Ok(EncryptedUpdate {
        params: pk.params,
        epoch: pk.epoch,
        weight,
        len: values.len() as u32,
        cts,
    })
}

/// The hub's running sum of one round's updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub(crate) params: ParamSetId,
    pub(crate) epoch: u64,
    pub(crate) round: u64,
    pub(crate) len: u32,
    pub(crate) log_scale: u32,
    pub(crate) total_weight: u64,
    pub(crate) count: u32,
    pub(crate) cts: Vec<Ciphertext>,
}

impl Aggregate {
    /// An empty aggregate for `len` parameters (an encryption of zero).
    pub fn new(params: ParamSetId, epoch: u64, round: u64, len: usize) -> Result<Self, Error> {
        let ctx = params.context();
        if len == 0 || len >= ctx.n * MAX_CHUNKS || len >= u32::MAX as usize {
            return Err(Error::ShapeMismatch("update length out of range"));
        }
        let zero = Ciphertext {
            params,
            log_scale: ctx.log_scale,
            c0: vec![0; 2 * ctx.n],
            c1: vec![0; 2 * ctx.n],
        };
        Ok(Self {
            params,
            epoch,
            round,
            len: len as u32,
            log_scale: ctx.log_scale,
            total_weight: 0,
            count: 0,
            cts: vec![zero; chunks_for(ctx.n, len)],
        })
    }

    /// Adds one update after checking parameters, epoch and shape.
    pub fn add(&mut self, update: &EncryptedUpdate) -> Result<(), Error> {
        if update.params != self.params {
            return Err(Error::ParamMismatch);
        }
        if update.epoch != self.epoch {
            return Err(Error::EpochMismatch {
                expected: self.epoch,
                got: update.epoch,
            });
        }
        if update.len != self.len || update.cts.len() != self.cts.len() {
            return Err(Error::ShapeMismatch("update length differs from the aggregate's"));
        }
        if update
            .cts
            .iter()
            .any(|c| c.log_scale != self.log_scale || c.params != self.params)
        {
            return Err(Error::ShapeMismatch("ciphertext scale differs"));
        }
        let total = self
            .total_weight
            .checked_add(update.weight as u64)
            .ok_or(Error::InvalidWeight("overflow"))?;
        let count = self
            .count
            .checked_add(1)
            .ok_or(Error::InvalidWeight("too many contributions"))?;
        let ctx = self.params.context();
        for (a, c) in self.cts.iter_mut().zip(&update.cts) {
            poly::add_assign(ctx, &mut a.c0, &c.c0);
            poly::add_assign(ctx, &mut a.c1, &c.c1);
        }
        self.total_weight = total;
        self.count = count;
        Ok(())
    }

    /// Number of updates added.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Sum of their weights.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }
    /// Round.
    pub fn round(&self) -> u64 {
        self.round
    }
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// True if no parameter slots (never, for a constructed aggregate).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The ciphertexts.
    pub fn ciphertexts(&self) -> &[Ciphertext] {
        &self.cts
    }

    /// The digest decryption shares must be bound to.
    pub fn digest(&self) -> [u8; 32] {
        let c1s: Vec<&[u64]> = self.cts.iter().map(|c| c.c1.as_slice()).collect();
        aggregate_digest(self.params, self.epoch, self.round, self.total_weight, &c1s)
    }

    /// The request to send to each member of `participants`.
    pub fn decryption_request(
        &self,
        receipts: Vec<ContributionReceipt>,
        min_contributions: u32,
        participants: &[u8],
    ) -> DecryptionRequest {
        let mut participants = participants.to_vec();
        participants.sort_unstable();
        DecryptionRequest {
            params: self.params,
            epoch: self.epoch,
            round: self.round,
            total_weight: self.total_weight,
            participants,
            min_contributions,
            receipts,
            c1: self.cts.iter().map(|c| c.c1.clone()).collect(),
        }
    }

    /// Combines the participants' shares into the weighted **sum** `Σ w_i·x_i`.
    pub fn combine_sum_f64(&self, shares: &[DecryptionShare]) -> Result<Vec<f64>, Error> {
        let digest = self.digest();
        let ctx = self.params.context();
        let sums = sum_shares(self.params, self.epoch, self.round, &digest, self.cts.len(), shares)?;
        let mut out = Vec::with_capacity(self.cts.len() * ctx.n);
        for (ct, mut h) in self.cts.iter().zip(sums) {
            poly::add_assign(ctx, &mut h, &ct.c0);
            out.extend(decode(ctx, &h, ct.log_scale));
        }
        self.check_canary(&out)?;
        out.truncate(self.len as usize);
        Ok(out)
    }

    /// The slot after the values carries `Σ w_i` (each update encrypts its weight there): it must decrypt
    /// to the aggregate's declared total weight. A wrong or tampered decryption share, a share from a
    /// different key, or an aggregate whose cleartext weight disagrees with its contents all fail here.
    fn check_canary(&self, out: &[f64]) -> Result<(), Error> {
        let canary = out.get(self.len as usize).copied().unwrap_or(f64::NAN);
        if (canary - self.total_weight as f64).abs() <= 0.01 {
            Ok(())
        } else {
            Err(Error::Combine(
                "integrity check failed: the decrypted weight differs from the total weight",
            ))
        }
    }

    /// Combines the participants' shares into the weighted average `Σ w_i·x_i / Σ w_i`.
    pub fn combine_f64(&self, shares: &[DecryptionShare]) -> Result<Vec<f64>, Error> {
        let w = self.nonzero_weight()?;
        Ok(self.combine_sum_f64(shares)?.into_iter().map(|v| v / w).collect())
    }

    /// [`Aggregate::combine_f64`] as `f32` (the model's precision).
    pub fn combine(&self, shares: &[DecryptionShare]) -> Result<Vec<f32>, Error> {
        Ok(self.combine_f64(shares)?.into_iter().map(|v| v as f32).collect())
    }

    /// Single-key decryption of the weighted sum (single-party deployments and tests).
    pub fn decrypt_sum_with(&self, sk: &SecretKey) -> Result<Vec<f64>, Error> {
        let mut out = Vec::with_capacity(self.cts.len() * self.params.context().n);
        for ct in &self.cts {
            out.extend(decrypt(sk, ct)?);
        }
        self.check_canary(&out)?;
        out.truncate(self.len as usize);
        Ok(out)
    }

    fn nonzero_weight(&self) -> Result<f64, Error> {
        if self.total_weight == 0 {
            return Err(Error::InvalidWeight("empty aggregate"));
        }
        Ok(self.total_weight as f64)
    }
}

/// Ciphertexts needed for `len` values plus the weight canary.
pub(crate) fn chunks_for(n: usize, len: usize) -> usize {
    (len + 1).div_ceil(n)
}

/// Free-function form of [`Aggregate::combine`].
pub fn combine(aggregate: &Aggregate, shares: &[DecryptionShare]) -> Result<Vec<f32>, Error> {
    aggregate.combine(shares)
}
