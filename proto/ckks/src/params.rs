//! Named parameter sets and the precomputed context (primes, NTT and FFT tables) for each.
//!
//! Every set uses two NTT-friendly primes `q ≡ 1 (mod 2N)` found deterministically at first use
//! (the largest primes below a fixed bit size), so the whole modulus `Q = q0·q1 < 2^124` and the CRT
//! reconstruction at decoding is exact in `u128`. FedAvg only adds ciphertexts, so no rescaling chain is
//! needed and `Q` stays far below the HomomorphicEncryption.org 128-bit bound for every `N`.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::arith::{inv_mod, ntt_prime_below, pow_mod, shoup};
use crate::encoding::FftTables;
use crate::ntt::NttTable;

/// Standard deviation of the discrete Gaussian error distribution.
pub const SIGMA: f64 = 3.2;
/// Errors are truncated to `|e| ≤ GAUSS_BOUND` (⌊6σ⌋).
pub const GAUSS_BOUND: i64 = 19;

/// Maximum `log2 Q` for 128-bit security with a ternary secret (HomomorphicEncryption.org standard, Table 1).
pub fn he_standard_max_log_q(n: usize) -> Option<u32> {
    match n {
        1024 => Some(27),
        2048 => Some(54),
        4096 => Some(109),
        8192 => Some(218),
        16384 => Some(438),
        32768 => Some(881),
        _ => None,
    }
}

/// The named parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ParamSetId {
    /// N = 4096, two primes of 55 and 54 bits (log2 Q < 109), scale 2^86. Smallest and fastest.
    Gw4096,
    /// N = 8192, two 60-bit primes (log2 Q ≈ 120 ≤ 218), scale 2^89. The default: precision headroom.
    #[default]
    Gw8192,
    /// N = 16384, two 60-bit primes (log2 Q ≈ 120 ≤ 438), scale 2^89. Large security margin.
    Gw16384,
}

impl ParamSetId {
    /// Every parameter set, in wire-code order.
    pub const ALL: [ParamSetId; 3] = [ParamSetId::Gw4096, ParamSetId::Gw8192, ParamSetId::Gw16384];

    /// The byte identifying the set on the wire.
    pub fn code(self) -> u8 {
        match self {
            ParamSetId::Gw4096 => 1,
            ParamSetId::Gw8192 => 2,
            ParamSetId::Gw16384 => 3,
        }
    }

    /// Inverse of [`ParamSetId::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }

    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            ParamSetId::Gw4096 => "gw-4096",
            ParamSetId::Gw8192 => "gw-8192",
            ParamSetId::Gw16384 => "gw-16384",
        }
    }

    fn spec(self) -> (usize, [u32; 2], u32) {
        // (N, prime bit sizes, log2 scale)
        match self {
            ParamSetId::Gw4096 => (4096, [55, 54], 86),
            ParamSetId::Gw8192 => (8192, [60, 60], 89),
            ParamSetId::Gw16384 => (16384, [60, 60], 89),
        }
    }

    /// The precomputed context (built once per process).
    pub fn context(self) -> &'static Context {
        static CTX: [OnceLock<Context>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = match self {
            ParamSetId::Gw4096 => &CTX[0],
            ParamSetId::Gw8192 => &CTX[1],
            ParamSetId::Gw16384 => &CTX[2],
        };
        slot.get_or_init(|| Context::build(self))
    }
}

/// Statistical security parameter of the smudging noise: the smudging half-width is `2^λ_s` times the
/// high-probability bound on the noise it hides.
pub const SMUDGING_LAMBDA: u32 = 40;

/// Precomputed data for one parameter set.
#[derive(Debug)]
pub struct Context {
    /// Which set this is.
    pub id: ParamSetId,
    /// Ring degree `N` (a power of two); a ciphertext holds `N` reals (two per complex slot).
    pub n: usize,
    /// The RNS primes.
    pub moduli: [u64; 2],
    /// `log2` of the default encoding scale Δ.
    pub log_scale: u32,
    pub(crate) ntt: [NttTable; 2],
    pub(crate) fft: FftTables,
    /// `q0^{-1} mod q1`, for CRT.
    pub(crate) q0_inv_mod_q1: u64,
    /// Bit widths of the primes (for the wire format).
    pub(crate) bits: [u32; 2],
    /// `2^e mod q_l` for `e < 128`, and Shoup quotients (exact reduction of encoded `f64`s).
    pub(crate) pow2: [Vec<u64>; 2],
    pub(crate) pow2_shoup: [Vec<u64>; 2],
    /// Shoup quotient of `q0_inv_mod_q1`.
    pub(crate) q0_inv_shoup: u64,
}

impl Context {
    fn build(id: ParamSetId) -> Self {
        let (n, bits, log_scale) = id.spec();
        let two_n = 2 * n as u64;
        // The prime search cannot fail for these sizes (there are many primes ≡ 1 mod 2N below 2^54);
        // the parameter tests check the outcome.
        let q0 = ntt_prime_below(bits[0], two_n, &[]).expect("an NTT prime exists below 2^bits");
        let q1 = ntt_prime_below(bits[1], two_n, &[q0]).expect("an NTT prime exists below 2^bits");
        let ntt = [
            NttTable::new(q0, n).expect("q0 is NTT-friendly by construction"),
            NttTable::new(q1, n).expect("q1 is NTT-friendly by construction"),
        ];
        let bit_len = |q: u64| 64 - q.leading_zeros();
        let pow2 = |q: u64| (0..128u64).map(|e| pow_mod(2, e, q)).collect::<Vec<u64>>();
        let pow2 = [pow2(q0), pow2(q1)];
        let pow2_shoup = [
            pow2[0].iter().map(|&w| shoup(w, q0)).collect(),
            pow2[1].iter().map(|&w| shoup(w, q1)).collect(),
        ];
        let q0_inv_mod_q1 = inv_mod(q0 % q1, q1);
        Self {
            id,
            n,
            moduli: [q0, q1],
            log_scale,
            ntt,
            fft: FftTables::new(n),
            q0_inv_mod_q1,
            bits: [bit_len(q0), bit_len(q1)],
            pow2,
            pow2_shoup,
            q0_inv_shoup: shoup(q0_inv_mod_q1, q1),
        }
    }

    /// `log2 Q`.
    pub fn log2_q(&self) -> f64 {
        self.moduli.iter().map(|&q| (q as f64).log2()).sum()
    }

    /// `Q = q0 · q1`.
    pub fn big_q(&self) -> u128 {
        self.moduli[0] as u128 * self.moduli[1] as u128
    }

    /// Largest absolute value of a decrypted result (the weighted **sum** `Σ w_i·x_i` of an aggregate, or
    /// one encoded value) at the default scale: `Δ·|value|` stays 8 times below `Q/2`, leaving room for the
    /// ciphertext and smudging noise. Encoding rejects larger values; the FL layer must clip updates so
    /// that `Σ w_i · max|x_i|` and the total weight `Σ w_i` (carried as an integrity canary) stay below this
    /// (2^18 for gw-4096, 2^26 for gw-8192 and gw-16384).
    pub fn max_abs_value(&self) -> f64 {
        let log_q = self.log2_q().floor() as i32;
        2f64.powi(log_q - 1 - 3 - self.log_scale as i32)
    }

    /// Variance of one coefficient of a fresh public-key encryption's noise `u·e + e0 + s·e1`
    /// under a collective key of `members` key shares (ternary `u`, `s = Σ s_i`, `e = Σ e_i`).
    pub fn fresh_noise_variance(&self, members: u32) -> f64 {
        let ternary_var = 2.0 / 3.0;
        let s2 = SIGMA * SIGMA;
        2.0 * self.n as f64 * ternary_var * members as f64 * s2 + s2
    }

    /// High-probability bound (8 standard deviations, per-coefficient tail < 2^-49) on the infinity norm
    /// of the noise in a sum of `contributions` fresh ciphertexts under a key of `members` shares.
    pub fn aggregate_noise_bound(&self, members: u32, contributions: u32) -> f64 {
        8.0 * (contributions.max(1) as f64 * self.fresh_noise_variance(members)).sqrt()
    }

    /// `log2` of the half-width of the uniform smudging noise a decryption share adds:
    /// `2^(λ_s + ⌈log2 B⌉)` with `B` = [`Context::aggregate_noise_bound`].
    pub fn smudging_log2(&self, members: u32, contributions: u32) -> u32 {
        SMUDGING_LAMBDA + self.aggregate_noise_bound(members, contributions).log2().ceil() as u32
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::arith::is_prime_u64;

    #[test]
    fn every_set_is_within_the_he_standard_and_ntt_friendly() {
        for id in ParamSetId::ALL {
            let ctx = id.context();
            let bound = he_standard_max_log_q(ctx.n).unwrap();
            assert!(
                ctx.log2_q() <= bound as f64,
                "{}: log2 Q = {} > {bound}",
                id.name(),
                ctx.log2_q()
            );
            assert_ne!(ctx.moduli[0], ctx.moduli[1]);
            for &q in &ctx.moduli {
                assert!(is_prime_u64(q), "{q} not prime");
                assert_eq!(q % (2 * ctx.n as u64), 1, "{q} not 1 mod 2N");
                assert!(q < 1 << 62);
            }
            assert_eq!(ParamSetId::from_code(id.code()), Some(id));
            // The default plaintext bound leaves room for the sum of 1,000 updates with |w| ≤ 8.
            assert!(ctx.max_abs_value() >= 8.0 * 1000.0 * 16.0, "{}", id.name());
            // Smudging of a 1,000-update aggregate by a 7-member committee fits in an i64 sample.
            assert!(ctx.smudging_log2(7, 1000) <= 62);
        }
        assert_eq!(ParamSetId::from_code(0), None);
        assert_eq!(ParamSetId::default(), ParamSetId::Gw8192);
        assert!((ParamSetId::Gw4096.context().log2_q()) < 109.0);
    }
}
