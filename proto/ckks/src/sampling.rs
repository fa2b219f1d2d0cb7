//! Samplers: ternary secrets, truncated discrete Gaussian errors, uniform residues, uniform smudging noise.
//!
//! The Gaussian sampler is a cumulative-distribution table scanned in full for every sample (no
//! data-dependent branch or early exit on the secret value); the ternary sampler is a multiply-high;
//! uniform residues use rejection on a masked word (the rejection only depends on public moduli and
//! random bits that are discarded).

use std::sync::OnceLock;

use rand_core::RngCore;

use crate::params::{Context, GAUSS_BOUND, SIGMA};

/// Uniform over {-1, 0, 1} (each with probability 1/3, bias < 2^-62).
pub(crate) fn ternary<R: RngCore + ?Sized>(rng: &mut R, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| ((rng.next_u64() as u128 * 3) >> 64) as i64 - 1)
        .collect()
}

fn gaussian_cdt() -> &'static [u64; GAUSS_BOUND as usize] {
    static T: OnceLock<[u64; GAUSS_BOUND as usize]> = OnceLock::new();
    T.get_or_init(|| {
        // Distribution of |e|: P(0) ∝ 1, P(k) ∝ 2·exp(-k²/2σ²) for 1 ≤ k ≤ GAUSS_BOUND.
        let rho = |k: i64| (-((k * k) as f64) / (2.0 * SIGMA * SIGMA)).exp();
        let total: f64 = 1.0 + 2.0 * (1..=GAUSS_BOUND).map(rho).sum::<f64>();
        let mut acc = 0.0;
        let mut table = [0u64; GAUSS_BOUND as usize];
        for (k, slot) in table.iter_mut().enumerate() {
            acc += if k == 0 { 1.0 } else { 2.0 * rho(k as i64) } / total;
            *slot = (acc * (1u64 << 63) as f64) as u64;
        }
        table
    })
}

/// Discrete Gaussian, σ = 3.2, truncated to |e| ≤ 19.
pub(crate) fn gaussian<R: RngCore + ?Sized>(rng: &mut R, n: usize) -> Vec<i64> {
    let table = gaussian_cdt();
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            let negative = (r >> 63) as i64;
            let u = r & ((1u64 << 63) - 1);
            let mag: i64 = table.iter().map(|&t| (u >= t) as i64).sum();
            // mag·(1 - 2·negative) without a branch
            mag - 2 * negative * mag
        })
        .collect()
}

/// Uniform integers in `[-2^log_half, 2^log_half)`; `log_half ≤ 62`.
pub(crate) fn uniform_smudge<R: RngCore + ?Sized>(rng: &mut R, n: usize, log_half: u32) -> Vec<i64> {
    let bits = log_half.min(62) + 1;
    let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let half = 1i64 << log_half.min(62);
    (0..n).map(|_| (rng.next_u64() & mask) as i64 - half).collect()
}

/// Uniform residues modulo each prime (`2N` words, prime-major).
pub(crate) fn uniform_rns<R: RngCore + ?Sized>(ctx: &Context, rng: &mut R) -> Vec<u64> {
    let mut out = Vec::with_capacity(2 * ctx.n);
    for &q in &ctx.moduli {
        let mask = u64::MAX >> q.leading_zeros();
        let mut filled = 0;
        while filled < ctx.n {
            let x = rng.next_u64() & mask;
            if x < q {
                out.push(x);
                filled += 1;
            }
        }
    }
    out
}

/// Lifts signed integers with `|v| < min(q)` to RNS residues (`2N` words, prime-major), branch-free.
pub(crate) fn lift_small(ctx: &Context, small: &[i64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(2 * ctx.n);
    for &q in &ctx.moduli {
        // v < 0: (2^64 + v) + q wraps to q + v.
        out.extend(small.iter().map(|&v| (v as u64).wrapping_add(q & ((v >> 63) as u64))));
    }
    out
}

/// Lifts arbitrary `i64` values to RNS residues (`2N` words, prime-major).
pub(crate) fn lift_wide(ctx: &Context, values: &[i64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(2 * ctx.n);
    for &q in &ctx.moduli {
        out.extend(values.iter().map(|&v| v.rem_euclid(q as i64) as u64));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::params::ParamSetId;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    #[test]
    fn gaussian_moments_and_support() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let s = gaussian(&mut rng, 200_000);
        let n = s.len() as f64;
        let mean = s.iter().sum::<i64>() as f64 / n;
        let var = s.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var.sqrt() - SIGMA).abs() < 0.05, "sd {}", var.sqrt());
        assert!(s.iter().all(|x| x.abs() <= GAUSS_BOUND));
        assert!(s.contains(&-9) && s.contains(&9));
    }

    #[test]
    fn smudge_range_and_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let s = uniform_smudge(&mut rng, 100_000, 20);
        assert!(s.iter().all(|&x| (-(1 << 20)..(1 << 20)).contains(&x)));
        let mean = s.iter().sum::<i64>() as f64 / s.len() as f64;
        assert!(mean.abs() < 2.0 * (1 << 20) as f64 / 300.0);
        let sd = (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        let expect = (1 << 20) as f64 / 3f64.sqrt();
        assert!((sd / expect - 1.0).abs() < 0.02);
    }

    #[test]
    fn lifts_agree() {
        let ctx = ParamSetId::Gw4096.context();
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut v: Vec<i64> = gaussian(&mut rng, ctx.n);
        v[0] = -1;
        v[1] = 1;
        v[2] = 0;
        assert_eq!(lift_small(ctx, &v), lift_wide(ctx, &v));
        let big = uniform_smudge(&mut rng, ctx.n, 60);
        let lifted = lift_wide(ctx, &big);
        for (j, &b) in big.iter().enumerate() {
            for (l, &q) in ctx.moduli.iter().enumerate() {
                assert_eq!((lifted[l * ctx.n + j] as i128 - b as i128).rem_euclid(q as i128), 0);
            }
        }
    }

    #[test]
    fn uniform_residues_below_modulus() {
        let ctx = ParamSetId::Gw4096.context();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let u = uniform_rns(ctx, &mut rng);
        assert_eq!(u.len(), 2 * ctx.n);
        assert!(u[..ctx.n].iter().all(|&x| x < ctx.moduli[0]));
        assert!(u[ctx.n..].iter().all(|&x| x < ctx.moduli[1]));
    }
}
