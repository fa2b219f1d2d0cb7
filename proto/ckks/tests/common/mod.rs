//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use gatewatch_ckks::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[derive(Debug)]
pub struct Committee {
    pub config: CommitteeConfig,
    pub pk: PublicKey,
    pub members: Vec<CommitteeMember>,
}

pub fn committee(
    params: ParamSetId,
    epoch: u64,
    n: u8,
    t: u8,
    min_contributions: u32,
    rng: &mut ChaCha20Rng,
) -> Committee {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let config = CommitteeConfig::new(params, epoch, n, t, seed).unwrap();
    let kg: Vec<MemberKeygen> = (1..=n).map(|i| MemberKeygen::new(&config, i, rng).unwrap()).collect();
    let pk = collective_public_key(&config, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>()).unwrap();
    let received: Vec<Vec<ShamirShare>> = (1..=n)
        .map(|j| kg.iter().map(|m| m.share_for(j).unwrap()).collect())
        .collect();
    let members = kg
        .into_iter()
        .zip(received)
        .map(|(m, sh)| m.finish(&sh, min_contributions).unwrap())
        .collect();
    Committee { config, pk, members }
}

pub fn random_values(rng: &mut ChaCha20Rng, len: usize, bound: f32) -> Vec<f32> {
    (0..len)
        .map(|_| ((rng.next_u32() as f64 / u32::MAX as f64) * 2.0 - 1.0) as f32 * bound)
        .collect()
}

/// Returns (aggregate, receipts, exact weighted sums in f64).
pub fn aggregate_of(
    pk: &PublicKey,
    round: u64,
    updates: &[(Vec<f32>, u32)],
    rng: &mut ChaCha20Rng,
) -> (Aggregate, Vec<ContributionReceipt>, Vec<f64>) {
    let len = updates[0].0.len();
    let mut agg = Aggregate::new(pk.params(), pk.epoch(), round, len).unwrap();
    let mut receipts = Vec::new();
    let mut sum = vec![0f64; len];
    for (i, (vals, w)) in updates.iter().enumerate() {
        let u = encrypt_update_with_rng(pk, vals, *w, rng).unwrap();
        agg.add(&u).unwrap();
        receipts.push(u.receipt(round, &format!("agent-{i}")));
        for (s, v) in sum.iter_mut().zip(vals) {
            *s += *v as f64 * *w as f64;
        }
    }
    (agg, receipts, sum)
}

pub fn max_abs_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
