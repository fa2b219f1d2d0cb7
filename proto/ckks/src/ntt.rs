//! Negacyclic number-theoretic transform over `Z_q[X]/(X^N + 1)`.
//!
//! Cooley–Tukey forward / Gentleman–Sande inverse with the `ψ` twist merged into the twiddles
//! (Longa–Naehrig layout), Harvey's lazy butterflies (values kept in `[0, 4q)` / `[0, 2q)`) and
//! Shoup-precomputed twiddle quotients, so every butterfly is one high multiplication and no division.
//! Requires `q < 2^62` so that `4q` fits in a word.

use crate::arith::{inv_mod, mul_shoup, mul_shoup_lazy, pow_mod, primitive_2n_root, shoup};

/// Precomputed tables for one prime and one ring degree.
#[derive(Debug, Clone)]
pub(crate) struct NttTable {
    pub(crate) q: u64,
    n: usize,
    /// `ψ^{bitrev(i)}` and Shoup quotients.
    fwd: Vec<u64>,
    fwd_shoup: Vec<u64>,
    /// `ψ^{-bitrev(i)}` and Shoup quotients.
    inv: Vec<u64>,
    inv_shoup: Vec<u64>,
    n_inv: u64,
    n_inv_shoup: u64,
}

fn bit_reverse(x: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        x.reverse_bits() >> (usize::BITS - bits)
    }
}

impl NttTable {
    /// Tables for prime `q ≡ 1 (mod 2n)`, `q < 2^62`, `n` a power of two. `None` if the prime is unsuitable.
    pub(crate) fn new(q: u64, n: usize) -> Option<Self> {
        if !n.is_power_of_two() || q >= 1 << 62 {
            return None;
        }
        let psi = primitive_2n_root(q, n as u64)?;
        let psi_inv = inv_mod(psi, q);
        let bits = n.trailing_zeros();
        let mut fwd = vec![0u64; n];
        let mut inv = vec![0u64; n];
        for (i, (f, v)) in fwd.iter_mut().zip(inv.iter_mut()).enumerate() {
            let e = bit_reverse(i, bits) as u64;
            *f = pow_mod(psi, e, q);
            *v = pow_mod(psi_inv, e, q);
        }
        let fwd_shoup = fwd.iter().map(|&w| shoup(w, q)).collect();
        let inv_shoup = inv.iter().map(|&w| shoup(w, q)).collect();
        let n_inv = inv_mod(n as u64 % q, q);
        Some(Self {
            q,
            n,
            fwd,
            fwd_shoup,
            inv,
            inv_shoup,
            n_inv,
            n_inv_shoup: shoup(n_inv, q),
        })
    }

    /// In-place forward transform: coefficients in `[0, q)` → evaluations (bit-reversed order) in `[0, q)`.
    pub(crate) fn forward(&self, a: &mut [u64]) {
        debug_assert_eq!(a.len(), self.n);
        let q = self.q;
        let two_q = 2 * q;
        let n = self.n;
        let mut t = n;
        let mut m = 1;
        while m < n {
            t >>= 1;
            for i in 0..m {
                let w = self.fwd[m + i];
                let ws = self.fwd_shoup[m + i];
                let j1 = 2 * i * t;
                let (lo, hi) = a[j1..j1 + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let mut u = *x;
                    if u >= two_q {
                        u -= two_q;
                    }
                    let v = mul_shoup_lazy(*y, w, ws, q);
                    *x = u + v;
                    *y = u + two_q - v;
                }
            }
            m <<= 1;
        }
        for x in a.iter_mut() {
            let mut v = *x;
            if v >= two_q {
                v -= two_q;
            }
            if v >= q {
                v -= q;
            }
            *x = v;
        }
    }

    /// In-place inverse transform: evaluations (bit-reversed order) in `[0, q)` → coefficients in `[0, q)`.
    pub(crate) fn inverse(&self, a: &mut [u64]) {
        debug_assert_eq!(a.len(), self.n);
        let q = self.q;
        let two_q = 2 * q;
        let mut t = 1;
        let mut m = self.n;
        while m > 1 {
            let h = m >> 1;
            for i in 0..h {
                let w = self.inv[h + i];
                let ws = self.inv_shoup[h + i];
                let j1 = 2 * i * t;
                let (lo, hi) = a[j1..j1 + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let u = *x;
                    let v = *y;
                    let mut s = u + v;
                    if s >= two_q {
                        s -= two_q;
                    }
                    *x = s;
                    *y = mul_shoup_lazy(u + two_q - v, w, ws, q);
                }
            }
            t <<= 1;
            m = h;
        }
        for x in a.iter_mut() {
            *x = mul_shoup(*x, self.n_inv, self.n_inv_shoup, q);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::arith::{mul_mod, ntt_prime_below};
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn schoolbook(a: &[u64], b: &[u64], q: u64) -> Vec<u64> {
        let n = a.len();
        let mut out = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let p = mul_mod(a[i], b[j], q);
                let k = i + j;
                if k < n {
                    out[k] = (out[k] + p) % q;
                } else {
                    out[k - n] = (out[k - n] + q - p) % q;
                }
            }
        }
        out
    }

    #[test]
    fn ntt_multiplication_matches_schoolbook() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(n, bits) in &[(8usize, 20u32), (64, 40), (256, 61)] {
            let q = ntt_prime_below(bits, 2 * n as u64, &[]).unwrap();
            let t = NttTable::new(q, n).unwrap();
            let a: Vec<u64> = (0..n).map(|_| rng.next_u64() % q).collect();
            let b: Vec<u64> = (0..n).map(|_| rng.next_u64() % q).collect();
            let expect = schoolbook(&a, &b, q);
            let (mut fa, mut fb) = (a.clone(), b.clone());
            t.forward(&mut fa);
            t.forward(&mut fb);
            let mut prod: Vec<u64> = fa.iter().zip(&fb).map(|(&x, &y)| mul_mod(x, y, q)).collect();
            t.inverse(&mut prod);
            assert_eq!(prod, expect, "n = {n}");
            let mut back = fa.clone();
            t.inverse(&mut back);
            assert_eq!(back, a);
        }
    }

    #[test]
    fn rejects_bad_moduli() {
        assert!(NttTable::new(97, 6).is_none());
        assert!(NttTable::new(101, 8).is_none()); // 101 - 1 is not divisible by 16
    }
}
