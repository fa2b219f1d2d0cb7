//! Threshold multiparty keys and collective decryption (after Mouchet et al., PETS 2021, and the design of
//! Lattigo's `multiparty` package), specialised to what FedAvg needs.
//!
//! * **Key generation.** Member `i` of an `n`-member committee samples a ternary `s_i` and publishes
//!   `p_i = -a·s_i + e_i`, where `a` is expanded from the committee's public 32-byte seed. The collective key
//!   is `(Σ p_i, a)`, an encryption key for `s = Σ s_i`, which nobody ever holds.
//! * **t-of-n.** Member `i` also Shamir-shares `s_i` coefficient-wise over each RNS prime with a random
//!   polynomial of degree `t-1` (evaluation points `1..=n`), sending `f_i(j)` to member `j` over an
//!   authenticated, encrypted channel. Member `j` keeps `σ_j = Σ_i f_i(j)`, a Shamir share of `s`; any set
//!   `T` of at least `t` members has Lagrange coefficients `λ_j` with `Σ_{j∈T} λ_j σ_j = s`.
//! * **Collective decryption.** Member `j ∈ T` returns `h_j = λ_j·σ_j·c1 + e_j` for each aggregate
//!   ciphertext, with `e_j` uniform in `[-2^k, 2^k)`, `k = λ_s + ⌈log2 B⌉` ([`Context::smudging_log2`]),
//!   `B` the high-probability bound on the aggregate's noise: statistically (distance ≤ 2^-λ_s per
//!   coefficient) the combined output `c0 + Σ h_j` reveals the sum of updates and nothing about the
//!   ciphertext noise (hence nothing about the key shares or the encryption randomness).
//! * **Policy.** A member answers only requests that carry at least `min_contributions` contribution
//!   receipts for the round (distinct agents, distinct update digests, weights adding up to the
//!   aggregate's declared total), for the current epoch, and answers each round and each ciphertext at most
//!   once: a repeated identical request gets the identical share back, anything else is refused.
//! * **Rotation.** A new epoch means new keys: [`CommitteeMember::rotate`] consumes the member, whose secret
//!   share is zeroized on drop.

use std::collections::{BTreeSet, HashMap, HashSet};

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::arith::{add_mod, inv_mod, mul_mod, sub_mod};
use crate::ckks::{key_share_poly, PublicKey, SecretPoly};
use crate::error::Error;
use crate::params::{Context, ParamSetId};
use crate::poly;
use crate::sampling::{lift_small, lift_wide, ternary, uniform_rns, uniform_smudge};

/// Largest committee supported (evaluation points must stay far below every prime).
pub const MAX_COMMITTEE: u8 = 64;
/// Largest number of ciphertexts in one aggregate (bounds allocations when decoding hostile requests).
pub const MAX_CHUNKS: usize = 4096;

/// Public description of one epoch's key committee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeConfig {
    /// Parameter set.
    pub params: ParamSetId,
    /// Key epoch; a new epoch means new keys.
    pub epoch: u64,
    /// Committee size `n`; members are numbered `1..=n`.
    pub members: u8,
    /// Decryption threshold `t`.
    pub threshold: u8,
    /// Public seed of the common random polynomial `a`.
    pub crp_seed: [u8; 32],
}

impl CommitteeConfig {
    /// Checks `1 ≤ t ≤ n ≤ MAX_COMMITTEE`.
    pub fn new(params: ParamSetId, epoch: u64, members: u8, threshold: u8, crp_seed: [u8; 32]) -> Result<Self, Error> {
        let c = Self {
            params,
            epoch,
            members,
            threshold,
            crp_seed,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks `1 ≤ t ≤ n ≤ MAX_COMMITTEE`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.members == 0 || self.members > MAX_COMMITTEE {
            return Err(Error::InvalidCommittee("committee size out of range"));
        }
        if self.threshold == 0 || self.threshold > self.members {
            return Err(Error::InvalidCommittee("threshold must be in 1..=members"));
        }
        Ok(())
    }

    fn check_member(&self, id: u8) -> Result<(), Error> {
        if id == 0 || id > self.members {
            return Err(Error::InvalidCommittee("member id out of range"));
        }
        Ok(())
    }
}

/// A member's public key share `p_i = -a·s_i + e_i` (coefficient form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyShare {
    pub(crate) params: ParamSetId,
    pub(crate) epoch: u64,
    pub(crate) member: u8,
    pub(crate) p: Vec<u64>,
}

impl PublicKeyShare {
    /// Member that made it.
    pub fn member(&self) -> u8 {
        self.member
    }
}

/// A Shamir share `f_i(j)` of member `i`'s secret for member `j`. **Secret**: send it only over an
/// authenticated, encrypted channel to `to`. Zeroized on drop.
#[derive(Debug, Clone)]
pub struct ShamirShare {
    pub(crate) params: ParamSetId,
    pub(crate) epoch: u64,
    pub(crate) from: u8,
    pub(crate) to: u8,
    pub(crate) value: SecretPoly,
}

impl ShamirShare {
    /// Sender.
    pub fn sender(&self) -> u8 {
        self.from
    }
    /// Recipient.
    pub fn recipient(&self) -> u8 {
        self.to
    }
}

/// A member during key generation: holds its own `s_i` and sharing polynomial (zeroized on drop).
#[derive(Debug)]
pub struct MemberKeygen {
    config: CommitteeConfig,
    id: u8,
    /// `[s_i, r_1, …, r_{t-1}]` in coefficient form: `f_i(x) = s_i + Σ r_k x^k`.
    sharing_poly: Vec<SecretPoly>,
    public_share: PublicKeyShare,
}

impl MemberKeygen {
    /// Samples member `id`'s secret, key share and Shamir sharing polynomial.
    pub fn new<R: RngCore + CryptoRng>(config: &CommitteeConfig, id: u8, rng: &mut R) -> Result<Self, Error> {
        config.validate()?;
        config.check_member(id)?;
        let ctx = config.params.context();
        let mut small = ternary(rng, ctx.n);
        let s = SecretPoly(lift_small(ctx, &small));
        small.zeroize();
        let mut s_ntt = s.clone();
        poly::ntt_forward(ctx, &mut s_ntt.0);
        let p = key_share_poly(ctx, &s_ntt, &config.crp_seed, rng);
        let mut sharing_poly = vec![s];
        for _ in 1..config.threshold {
            sharing_poly.push(SecretPoly(uniform_rns(ctx, rng)));
        }
        let public_share = PublicKeyShare {
            params: config.params,
            epoch: config.epoch,
            member: id,
            p,
        };
        Ok(Self {
            config: config.clone(),
            id,
            sharing_poly,
            public_share,
        })
    }

    /// Member id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// This member's public key share (to publish).
    pub fn public_share(&self) -> PublicKeyShare {
        self.public_share.clone()
    }

    /// The Shamir share `f_i(to)` for member `to` (including itself).
    pub fn share_for(&self, to: u8) -> Result<ShamirShare, Error> {
        self.config.check_member(to)?;
        let ctx = self.config.params.context();
        let n = ctx.n;
        let mut value = SecretPoly(vec![0u64; 2 * n]);
        for (l, &q) in ctx.moduli.iter().enumerate() {
            // Horner: f(x) = (…(r_{t-1}·x + r_{t-2})·x + …)·x + s
            let x = to as u64 % q;
            for k in (0..self.sharing_poly.len()).rev() {
                let coeffs = &self.sharing_poly[k].0[l * n..(l + 1) * n];
                for (acc, &c) in value.0[l * n..(l + 1) * n].iter_mut().zip(coeffs) {
                    *acc = add_mod(mul_mod(*acc, x, q), c, q);
                }
            }
        }
        Ok(ShamirShare {
            params: self.config.params,
            epoch: self.config.epoch,
            from: self.id,
            to,
            value,
        })
    }

    /// Combines the shares received from every member (itself included) into this member's share of `s`.
    /// `min_contributions` is the member's own floor for decryption requests (see
    /// [`CommitteeMember::partial_decrypt`]); the request's policy value can only raise it.
    pub fn finish(self, received: &[ShamirShare], min_contributions: u32) -> Result<CommitteeMember, Error> {
        let ctx = self.config.params.context();
        let mut from = BTreeSet::new();
        let mut sigma = SecretPoly(vec![0u64; 2 * ctx.n]);
        for sh in received {
            if sh.params != self.config.params {
                return Err(Error::ParamMismatch);
            }
            if sh.epoch != self.config.epoch {
                return Err(Error::EpochMismatch {
                    expected: self.config.epoch,
                    got: sh.epoch,
                });
            }
            if sh.to != self.id {
                return Err(Error::KeyGen("share addressed to another member"));
            }
            self.config.check_member(sh.from)?;
            if !from.insert(sh.from) {
                return Err(Error::KeyGen("two shares from the same member"));
            }
            if !poly::is_reduced(ctx, &sh.value.0) {
                return Err(Error::KeyGen("share not reduced"));
            }
            poly::add_assign(ctx, &mut sigma.0, &sh.value.0);
        }
        if from.len() != self.config.members as usize {
            return Err(Error::KeyGen("need one share from every member"));
        }
        poly::ntt_forward(ctx, &mut sigma.0);
        Ok(CommitteeMember {
            config: self.config.clone(),
            id: self.id,
            share_ntt: sigma,
            min_contributions,
            issued: HashMap::new(),
        })
    }
}

/// Hub side: the collective public key `(Σ p_i, a)` from every member's share.
pub fn collective_public_key(config: &CommitteeConfig, shares: &[PublicKeyShare]) -> Result<PublicKey, Error> {
    config.validate()?;
    let ctx = config.params.context();
    let mut seen = BTreeSet::new();
    let mut p0 = vec![0u64; 2 * ctx.n];
    for sh in shares {
        if sh.params != config.params {
            return Err(Error::ParamMismatch);
        }
        if sh.epoch != config.epoch {
            return Err(Error::EpochMismatch {
                expected: config.epoch,
                got: sh.epoch,
            });
        }
        config.check_member(sh.member)?;
        if !seen.insert(sh.member) {
            return Err(Error::KeyGen("two public shares from the same member"));
        }
        if !poly::is_reduced(ctx, &sh.p) {
            return Err(Error::KeyGen("public share not reduced"));
        }
        poly::add_assign(ctx, &mut p0, &sh.p);
    }
    if seen.len() != config.members as usize {
        return Err(Error::KeyGen("need a public share from every member"));
    }
    PublicKey::from_parts(config.params, config.epoch, config.crp_seed, p0)
}

/// Lagrange coefficient at 0 of member `j` within `set`, modulo each prime.
pub(crate) fn lagrange_at_zero(ctx: &Context, set: &[u8], j: u8) -> [u64; 2] {
    let mut out = [0u64; 2];
    for (l, &q) in ctx.moduli.iter().enumerate() {
        let (mut num, mut den) = (1u64, 1u64);
        for &k in set.iter().filter(|&&k| k != j) {
            num = mul_mod(num, k as u64, q);
            den = mul_mod(den, sub_mod(k as u64, j as u64, q), q);
        }
        out[l] = mul_mod(num, inv_mod(den, q), q);
    }
    out
}

/// What an agent's submission earns: the hub shows these to the committee to prove an aggregate has
/// enough contributors. `signature` is the agent's enrollment-key signature over
/// [`ContributionReceipt::signed_bytes`]; this crate does not check it (it knows no identities):
/// the hub and the committee members do (`gatewatch_proto::fl::verify_signed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionReceipt {
    /// Key epoch.
    pub epoch: u64,
    /// FL round.
    pub round: u64,
    /// The contributing agent.
    pub agent_id: String,
    /// [`crate::EncryptedUpdate::digest`] of the update.
    pub update_digest: [u8; 32],
    /// The update's weight (sample count).
    pub weight: u32,
    /// Agent's signature over `signed_bytes()` (checked by the hub and the committee members).
    pub signature: Vec<u8>,
}

impl ContributionReceipt {
    /// Canonical bytes covered by the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = b"gatewatch-ckks/receipt/v1".to_vec();
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.extend_from_slice(&self.round.to_le_bytes());
        v.extend_from_slice(&(self.agent_id.len() as u64).to_le_bytes());
        v.extend_from_slice(self.agent_id.as_bytes());
        v.extend_from_slice(&self.update_digest);
        v.extend_from_slice(&self.weight.to_le_bytes());
        v
    }
}

/// Digest binding a decryption to one aggregate: parameters, epoch, round, total weight and every `c1`.
pub(crate) fn aggregate_digest(
    params: ParamSetId,
    epoch: u64,
    round: u64,
    total_weight: u64,
    c1s: &[&[u64]],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gatewatch-ckks/aggregate-c1/v1");
    h.update([params.code()]);
    h.update(epoch.to_le_bytes());
    h.update(round.to_le_bytes());
    h.update(total_weight.to_le_bytes());
    h.update((c1s.len() as u64).to_le_bytes());
    for c1 in c1s {
        for w in c1.iter() {
            h.update(w.to_le_bytes());
        }
    }
    h.finalize().into()
}

/// What the hub sends each chosen committee member to get a decryption share.
#[derive(Debug, Clone)]
pub struct DecryptionRequest {
    /// Parameter set.
    pub params: ParamSetId,
    /// Key epoch.
    pub epoch: u64,
    /// FL round (the ciphertext id, with the digest).
    pub round: u64,
    /// Sum of the contributions' weights.
    pub total_weight: u64,
    /// The members whose shares will be combined (sorted, distinct, at least `t`).
    pub participants: Vec<u8>,
    /// Policy: least number of contributions the hub claims the aggregate has.
    pub min_contributions: u32,
    /// One receipt per contribution.
    pub receipts: Vec<ContributionReceipt>,
    /// `c1` of every aggregate ciphertext (coefficient form).
    pub(crate) c1: Vec<Vec<u64>>,
}

impl DecryptionRequest {
    /// The digest shares are bound to.
    pub fn digest(&self) -> [u8; 32] {
        let c1s: Vec<&[u64]> = self.c1.iter().map(|c| c.as_slice()).collect();
        aggregate_digest(self.params, self.epoch, self.round, self.total_weight, &c1s)
    }
}

/// A member's smudged decryption share `h_j = λ_j·σ_j·c1 + e_j` for every ciphertext of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptionShare {
    pub(crate) params: ParamSetId,
    pub(crate) epoch: u64,
    pub(crate) round: u64,
    pub(crate) member: u8,
    pub(crate) digest: [u8; 32],
    pub(crate) participants: Vec<u8>,
    pub(crate) h: Vec<Vec<u64>>,
}

impl DecryptionShare {
    /// The member that made it.
    pub fn member(&self) -> u8 {
        self.member
    }
    /// The aggregate digest it is bound to.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// A committee member after key generation: holds `σ_j` (NTT form, zeroized on drop) and the record of
/// shares it has issued.
#[derive(Debug)]
pub struct CommitteeMember {
    pub(crate) config: CommitteeConfig,
    pub(crate) id: u8,
    pub(crate) share_ntt: SecretPoly,
    pub(crate) min_contributions: u32,
    /// round → what was issued for it.
    pub(crate) issued: HashMap<u64, Issued>,
}

/// The record of one issued decryption share.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) digest: [u8; 32],
    pub(crate) participants: Vec<u8>,
    /// Fingerprint of the `c1`s decrypted.
    pub(crate) fingerprint: [u8; 32],
    /// The share itself, to answer a repeated identical request identically (not kept across export/import).
    pub(crate) share: Option<DecryptionShare>,
}

/// Hash of the `c1`s alone (no round or weight), to recognise one ciphertext presented under two rounds.
fn c1_fingerprint(c1s: &[Vec<u64>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gatewatch-ckks/c1-fingerprint/v1");
    for c1 in c1s {
        for w in c1 {
            h.update(w.to_le_bytes());
        }
    }
    h.finalize().into()
}

impl CommitteeMember {
    /// Member id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The committee configuration.
    pub fn config(&self) -> &CommitteeConfig {
        &self.config
    }

    /// The rounds this member has issued a share for, with the aggregate digest of each (for audit logs;
    /// the FL layer should persist them so that a restarted member keeps refusing second shares).
    pub fn issued_rounds(&self) -> Vec<(u64, [u8; 32])> {
        let mut v: Vec<(u64, [u8; 32])> = self.issued.iter().map(|(r, i)| (*r, i.digest)).collect();
        v.sort_unstable();
        v
    }

    /// Ends this epoch: the secret share is zeroized (on drop) and key generation for `next` starts.
    pub fn rotate<R: RngCore + CryptoRng>(self, next: &CommitteeConfig, rng: &mut R) -> Result<MemberKeygen, Error> {
        if next.epoch <= self.config.epoch {
            return Err(Error::InvalidCommittee("a rotation must move to a later epoch"));
        }
        let id = self.id;
        drop(self);
        MemberKeygen::new(next, id, rng)
    }

    fn check_request(&self, req: &DecryptionRequest) -> Result<(), Error> {
        let ctx = self.config.params.context();
        if req.params != self.config.params {
            return Err(Error::ParamMismatch);
        }
        if req.epoch != self.config.epoch {
            return Err(Error::EpochMismatch {
                expected: self.config.epoch,
                got: req.epoch,
            });
        }
        let set: BTreeSet<u8> = req.participants.iter().copied().collect();
        if set.len() != req.participants.len() || !req.participants.windows(2).all(|w| w[0] < w[1]) {
            return Err(Error::Refused("participants must be sorted and distinct"));
        }
        if set.len() < self.config.threshold as usize {
            return Err(Error::Refused("fewer participants than the threshold"));
        }
        if !set.contains(&self.id) || set.iter().any(|&m| m == 0 || m > self.config.members) {
            return Err(Error::Refused("participant set invalid or without this member"));
        }
        let required = req.min_contributions.max(self.min_contributions).max(1) as usize;
        if req.receipts.len() < required {
            return Err(Error::Refused("not enough contribution receipts"));
        }
        let mut agents = HashSet::new();
        let mut digests = HashSet::new();
        let mut weight: u64 = 0;
        for r in &req.receipts {
            if r.epoch != req.epoch || r.round != req.round {
                return Err(Error::Refused("receipt for another epoch or round"));
            }
            if r.weight == 0 {
                return Err(Error::Refused("receipt with zero weight"));
            }
            if !agents.insert(r.agent_id.as_str()) {
                return Err(Error::Refused("two receipts from the same agent"));
            }
            if !digests.insert(r.update_digest) {
                return Err(Error::Refused("two receipts for the same update"));
            }
            weight = weight
                .checked_add(r.weight as u64)
                .ok_or(Error::InvalidWeight("overflow"))?;
        }
        if weight != req.total_weight {
            return Err(Error::Refused(
                "receipt weights do not add up to the aggregate's total weight",
            ));
        }
        if req.c1.is_empty() || req.c1.len() > MAX_CHUNKS || !req.c1.iter().all(|c| poly::is_reduced(ctx, c)) {
            return Err(Error::Refused("malformed aggregate"));
        }
        Ok(())
    }

    /// Makes this member's decryption share for `req`, after checking the policy (see module docs).
    pub fn partial_decrypt<R: RngCore + CryptoRng>(
        &mut self,
        req: &DecryptionRequest,
        rng: &mut R,
    ) -> Result<DecryptionShare, Error> {
        self.check_request(req)?;
        let digest = req.digest();
        let fingerprint = c1_fingerprint(&req.c1);
        if let Some(prev) = self.issued.get(&req.round) {
            if prev.digest == digest && prev.participants == req.participants {
                return prev
                    .share
                    .clone()
                    .ok_or(Error::Refused("share issued before a restore and not retained"));
            }
            return Err(Error::Refused("a different share was already issued for this round"));
        }
        if self.issued.values().any(|i| i.fingerprint == fingerprint) {
            return Err(Error::Refused("this ciphertext was already decrypted in another round"));
        }
        let ctx = self.config.params.context();
        let lambda = lagrange_at_zero(ctx, &req.participants, self.id);
        let mut weighted = self.share_ntt.clone();
        let n = ctx.n;
        for (l, &q) in ctx.moduli.iter().enumerate() {
            for x in weighted.0[l * n..(l + 1) * n].iter_mut() {
                *x = mul_mod(*x, lambda[l], q);
            }
        }
        let weighted_shoup = SecretPoly(poly::shoup_table(ctx, &weighted.0));
        let k = ctx.smudging_log2(self.config.members as u32, req.receipts.len() as u32);
        let h = req
            .c1
            .iter()
            .map(|c1| {
                let mut c1_ntt = c1.clone();
                poly::ntt_forward(ctx, &mut c1_ntt);
                let mut out = poly::mul_pointwise_shoup(ctx, &c1_ntt, &weighted.0, &weighted_shoup.0);
                poly::ntt_inverse(ctx, &mut out);
                let e = lift_wide(ctx, &uniform_smudge(rng, n, k));
                poly::add_assign(ctx, &mut out, &e);
                out
            })
            .collect();
        let share = DecryptionShare {
            params: req.params,
            epoch: req.epoch,
            round: req.round,
            member: self.id,
            digest,
            participants: req.participants.clone(),
            h,
        };
        self.issued.insert(
            req.round,
            Issued {
                digest,
                participants: req.participants.clone(),
                fingerprint,
                share: Some(share.clone()),
            },
        );
        Ok(share)
    }
}

/// Checks that `shares` come from exactly the participants they all name, bound to `digest`, and returns
/// `Σ_j h_j` per ciphertext.
pub(crate) fn sum_shares(
    params: ParamSetId,
    epoch: u64,
    round: u64,
    digest: &[u8; 32],
    chunks: usize,
    shares: &[DecryptionShare],
) -> Result<Vec<Vec<u64>>, Error> {
    let ctx = params.context();
    let first = shares.first().ok_or(Error::Combine("no shares"))?;
    let participants = &first.participants;
    let members: BTreeSet<u8> = shares.iter().map(|s| s.member).collect();
    if members.len() != shares.len() {
        return Err(Error::Combine("two shares from the same member"));
    }
    if !members.iter().copied().eq(participants.iter().copied()) {
        return Err(Error::Combine("shares do not match the participant set"));
    }
    let mut acc = vec![vec![0u64; 2 * ctx.n]; chunks];
    for s in shares {
        if s.params != params {
            return Err(Error::ParamMismatch);
        }
        if s.epoch != epoch {
            return Err(Error::EpochMismatch {
                expected: epoch,
                got: s.epoch,
            });
        }
        if s.round != round || &s.digest != digest {
            return Err(Error::Combine("share made for a different ciphertext"));
        }
        if &s.participants != participants {
            return Err(Error::Combine("shares name different participant sets"));
        }
        if s.h.len() != chunks || !s.h.iter().all(|h| poly::is_reduced(ctx, h)) {
            return Err(Error::Combine("share has the wrong shape"));
        }
        for (a, h) in acc.iter_mut().zip(&s.h) {
            poly::add_assign(ctx, a, h);
        }
    }
    Ok(acc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::ckks::{c1_times_secret, encrypt, Ciphertext};
    use crate::encoding::decode;
    use crate::params::SMUDGING_LAMBDA;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn committee(n: u8, t: u8, rng: &mut ChaCha20Rng) -> (CommitteeConfig, PublicKey, Vec<CommitteeMember>) {
        let config = CommitteeConfig::new(ParamSetId::Gw4096, 5, n, t, [9u8; 32]).unwrap();
        let kg: Vec<MemberKeygen> = (1..=n).map(|i| MemberKeygen::new(&config, i, rng).unwrap()).collect();
        let pk = collective_public_key(&config, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>()).unwrap();
        let all: Vec<Vec<ShamirShare>> = (1..=n)
            .map(|j| kg.iter().map(|m| m.share_for(j).unwrap()).collect())
            .collect();
        let members = kg
            .into_iter()
            .zip(all)
            .map(|(m, sh)| m.finish(&sh, 1).unwrap())
            .collect();
        (config, pk, members)
    }

    /// Decrypts with the raw (policy-free) share math for an arbitrary set, for the t-1 test.
    fn raw_decrypt(members: &[&CommitteeMember], ct: &Ciphertext) -> Vec<f64> {
        let ctx = ct.params.context();
        let set: Vec<u8> = members.iter().map(|m| m.id).collect();
        let mut m = ct.c0.clone();
        for mem in members {
            let lambda = lagrange_at_zero(ctx, &set, mem.id);
            let mut w = mem.share_ntt.clone();
            for l in 0..2 {
                for x in w.0[l * ctx.n..(l + 1) * ctx.n].iter_mut() {
                    *x = mul_mod(*x, lambda[l], ctx.moduli[l]);
                }
            }
            poly::add_assign(ctx, &mut m, &c1_times_secret(ctx, &ct.c1, &w).0);
        }
        decode(ctx, &m, ct.log_scale)
    }

    #[test]
    fn any_t_members_decrypt_and_t_minus_one_do_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let (_, pk, members) = committee(3, 2, &mut rng);
        let x: Vec<f64> = (0..300).map(|i| (i as f64).sin() * 4.0).collect();
        let ct = encrypt(&pk, &x, &mut rng).unwrap();
        let err = |d: &[f64]| x.iter().zip(d).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            assert!(err(&raw_decrypt(&[&members[a], &members[b]], &ct)) < 1e-9);
        }
        assert!(err(&raw_decrypt(&[&members[0], &members[1], &members[2]], &ct)) < 1e-9);
        for single in &members {
            assert!(
                err(&raw_decrypt(&[single], &ct)) > 1e3,
                "one share of a 2-of-3 must not decrypt"
            );
        }
    }

    #[test]
    fn smudging_noise_has_the_stated_width() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let (config, pk, mut members) = committee(3, 2, &mut rng);
        let ctx = config.params.context();
        let ct = encrypt(&pk, &[1.0, 2.0], &mut rng).unwrap();
        let receipts = (0..10)
            .map(|i| ContributionReceipt {
                epoch: config.epoch,
                round: 1,
                agent_id: format!("a{i}"),
                update_digest: [i as u8; 32],
                weight: 1,
                signature: vec![],
            })
            .collect();
        let req = DecryptionRequest {
            params: config.params,
            epoch: config.epoch,
            round: 1,
            total_weight: 10,
            participants: vec![1, 2],
            min_contributions: 10,
            receipts,
            c1: vec![ct.c1.clone()],
        };
        let share = members[0].partial_decrypt(&req, &mut rng).unwrap();
        // Recompute λ_1·σ_1·c1 and take the difference: it must be the smudging noise alone.
        let lambda = lagrange_at_zero(ctx, &[1, 2], 1);
        let mut w = members[0].share_ntt.clone();
        for l in 0..2 {
            for x in w.0[l * ctx.n..(l + 1) * ctx.n].iter_mut() {
                *x = mul_mod(*x, lambda[l], ctx.moduli[l]);
            }
        }
        let mut diff = share.h[0].clone();
        poly::sub_assign(ctx, &mut diff, &c1_times_secret(ctx, &ct.c1, &w).0);
        let k = ctx.smudging_log2(3, 10);
        assert!(
            k >= SMUDGING_LAMBDA + 12,
            "width 2^{k} must exceed 2^λ_s times the noise bound"
        );
        let mut sum_sq = 0f64;
        for j in 0..ctx.n {
            // CRT lift to (-Q/2, Q/2]: the noise is a small integer there.
            let e0 = crate::encoding::centred_lift(ctx, &diff, j);
            assert!(-(1i128 << k) <= e0 && e0 < (1i128 << k), "{e0} outside ±2^{k}");
            sum_sq += (e0 as f64).powi(2);
        }
        let sd = (sum_sq / ctx.n as f64).sqrt();
        let expect = 2f64.powi(k as i32) / 3f64.sqrt();
        assert!((sd / expect - 1.0).abs() < 0.05, "sd {sd:e} vs {expect:e}");
    }

    #[test]
    fn lagrange_coefficients_interpolate_constants() {
        let ctx = ParamSetId::Gw4096.context();
        // f(x) = 5 + 7x + 11x^2, reconstruct f(0) from 3 points.
        let set = [2u8, 3, 5];
        for (l, &q) in ctx.moduli.iter().enumerate() {
            let mut acc = 0;
            for &j in &set {
                let f = 5 + 7 * j as u64 + 11 * (j as u64).pow(2);
                acc = add_mod(acc, mul_mod(f, lagrange_at_zero(ctx, &set, j)[l], q), q);
            }
            assert_eq!(acc, 5);
        }
    }

    #[test]
    fn keygen_rejects_bad_inputs() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        assert!(CommitteeConfig::new(ParamSetId::Gw4096, 1, 3, 4, [0; 32]).is_err());
        assert!(CommitteeConfig::new(ParamSetId::Gw4096, 1, 0, 0, [0; 32]).is_err());
        let config = CommitteeConfig::new(ParamSetId::Gw4096, 1, 3, 2, [0; 32]).unwrap();
        assert!(MemberKeygen::new(&config, 4, &mut rng).is_err());
        assert!(MemberKeygen::new(&config, 0, &mut rng).is_err());
        let kg: Vec<MemberKeygen> = (1..=3)
            .map(|i| MemberKeygen::new(&config, i, &mut rng).unwrap())
            .collect();
        let shares: Vec<PublicKeyShare> = kg.iter().map(|m| m.public_share()).collect();
        assert!(collective_public_key(&config, &shares[..2]).is_err());
        assert!(collective_public_key(&config, &[shares[0].clone(), shares[0].clone(), shares[1].clone()]).is_err());
        let mut it = kg.into_iter();
        let m1 = it.next().unwrap();
        let m2 = it.next().unwrap();
        // Missing shares, duplicated senders, wrong recipient.
        let own = m1.share_for(1).unwrap();
        let to2 = m2.share_for(2).unwrap();
        assert!(matches!(
            MemberKeygen::new(&config, 1, &mut rng)
                .unwrap()
                .finish(&[own.clone(), own.clone()], 1),
            Err(Error::KeyGen(_))
        ));
        assert!(matches!(m1.finish(&[own, to2], 1), Err(Error::KeyGen(_))));
    }

    #[test]
    fn secret_polys_zeroize() {
        fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroize_on_drop::<SecretPoly>();
        let mut p = SecretPoly(vec![1, 2, 3]);
        p.zeroize();
        // Vec's zeroize wipes the whole capacity, then clears it.
        assert!(p.0.is_empty());
    }
}
