//! Canonical-embedding encoding of real vectors, two reals per complex slot.
//!
//! A plaintext is `m(X) ∈ Z[X]/(X^N + 1)`; its slots are `z_k = m(ρ_k)` at the `N/2` primitive `2N`-th
//! roots of unity `ρ_k = ζ^{4k+1}` (`ζ = e^{iπ/N}`); the remaining roots are their conjugates, so a real
//! `m` is determined by these `N/2` complex values. Writing `m = a + X^{N/2}·b` and using
//! `ρ_k^{N/2} = i`, `m(ρ_k) = Σ_{j<N/2} (a_j + i·b_j)·ζ^j·ω^{jk}` with `ω = ζ^4` an `(N/2)`-th root of unity:
//! decoding is a twist followed by one complex FFT of size `N/2`, encoding the inverse.
//! Slot `k` carries reals `2k` (real part) and `2k+1` (imaginary part).

use crate::error::Error;
use crate::params::Context;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    #[inline]
    fn mul(self, o: Complex) -> Complex {
        Complex {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    #[inline]
    fn conj(self) -> Complex {
        Complex {
            re: self.re,
            im: -self.im,
        }
    }
    fn cis(theta: f64) -> Complex {
        Complex {
            re: theta.cos(),
            im: theta.sin(),
        }
    }
}

/// Twiddles for the size-`N/2` FFT and the `ζ^j` twist.
#[derive(Debug, Clone)]
pub(crate) struct FftTables {
    m: usize,
    /// `e^{2πi k/m}` for `k < m/2`.
    roots: Vec<Complex>,
    /// `ζ^j = e^{iπ j/N}` for `j < N/2`.
    twist: Vec<Complex>,
}

impl FftTables {
    pub(crate) fn new(n: usize) -> Self {
        let m = n / 2;
        let pi = std::f64::consts::PI;
        let roots = (0..m / 2)
            .map(|k| Complex::cis(2.0 * pi * k as f64 / m as f64))
            .collect();
        let twist = (0..m).map(|j| Complex::cis(pi * j as f64 / n as f64)).collect();
        Self { m, roots, twist }
    }

    /// In-place radix-2 FFT: `a_k ← Σ_j a_j e^{±2πi jk/m}` (`inverse` selects the minus sign; no 1/m factor).
    fn fft(&self, a: &mut [Complex], inverse: bool) {
        let m = self.m;
        let bits = m.trailing_zeros();
        if bits > 0 {
            for i in 0..m {
                let j = i.reverse_bits() >> (usize::BITS - bits);
                if i < j {
                    a.swap(i, j);
                }
            }
        }
        let mut len = 2;
        while len <= m {
            let half = len / 2;
            let step = m / len;
            for start in (0..m).step_by(len) {
                for j in 0..half {
                    let w = self.roots[j * step];
                    let w = if inverse { w.conj() } else { w };
                    let u = a[start + j];
                    let v = a[start + j + half].mul(w);
                    a[start + j] = Complex {
                        re: u.re + v.re,
                        im: u.im + v.im,
                    };
                    a[start + j + half] = Complex {
                        re: u.re - v.re,
                        im: u.im - v.im,
                    };
                }
            }
            len <<= 1;
        }
    }
}

/// Encodes up to `N` reals at scale `2^log_scale` into RNS residues (`out.len() == 2N`, prime-major).
pub(crate) fn encode(ctx: &Context, values: &[f64], log_scale: u32, out: &mut [u64]) -> Result<(), Error> {
    let n = ctx.n;
    let m = n / 2;
    if values.len() > n {
        return Err(Error::TooManyValues {
            got: values.len(),
            max: n,
        });
    }
    let max = ctx.max_abs_value() * 2f64.powi(ctx.log_scale as i32 - log_scale as i32);
    let mut z = vec![Complex::default(); m];
    for (k, pair) in values.chunks(2).enumerate() {
        let re = pair[0];
        let im = pair.get(1).copied().unwrap_or(0.0);
        for v in [re, im] {
            if !v.is_finite() {
                return Err(Error::NonFinite);
            }
            if v.abs() > max {
                return Err(Error::ValueTooLarge { value: v, max });
            }
        }
        z[k] = Complex { re, im };
    }
    let t = &ctx.fft;
    t.fft(&mut z, true);
    let scale = 2f64.powi(log_scale as i32) / m as f64;
    let (r0, r1) = out.split_at_mut(n);
    for (j, w) in z.iter().enumerate() {
        let w = w.mul(t.twist[j].conj());
        for (idx, part) in [(j, w.re), (j + m, w.im)] {
            // |part·scale| ≤ √2·max·Δ < Q/8 < 2^121.
            let (r, s) = f64_to_residues(ctx, (part * scale).round());
            r0[idx] = r;
            r1[idx] = s;
        }
    }
    Ok(())
}

/// Residues of an integral `f64` `v` (`|v| < 2^127`) modulo both primes, exactly: `v = ±mant·2^e`, so
/// `v mod q = ±mant·(2^e mod q)` with a precomputed power and a Shoup product.
fn f64_to_residues(ctx: &Context, v: f64) -> (u64, u64) {
    let bits = v.to_bits();
    let negative = bits >> 63 == 1;
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let (mant, e) = if biased == 0 {
        (0u64, 0usize) // zero (subnormals cannot be integral and non-zero)
    } else {
        let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
        let e = biased - 1075;
        if e >= 0 {
            (mant, e as usize)
        } else {
            // |v| < 2^53: an exact small integer.
            ((v.abs()) as u64, 0)
        }
    };
    let mut out = [0u64; 2];
    for (l, &q) in ctx.moduli.iter().enumerate() {
        // mant < 2^53 ≤ q·2^11, Shoup accepts any 64-bit input.
        let r = crate::arith::mul_shoup(mant, ctx.pow2[l][e.min(127)], ctx.pow2_shoup[l][e.min(127)], q);
        out[l] = if negative && r != 0 { q - r } else { r };
    }
    (out[0], out[1])
}

/// CRT-reconstructs each coefficient to its centred lift in `(-Q/2, Q/2]`.
pub(crate) fn centred_lift(ctx: &Context, residues: &[u64], j: usize) -> i128 {
    let n = ctx.n;
    let [q0, q1] = ctx.moduli;
    let x0 = residues[j];
    let x1 = residues[n + j];
    // x = x0 + q0 · ((x1 - x0) · q0^{-1} mod q1)
    let diff = crate::arith::sub_mod(x1, x0 % q1, q1);
    let k = crate::arith::mul_shoup(diff, ctx.q0_inv_mod_q1, ctx.q0_inv_shoup, q1);
    let x = x0 as u128 + q0 as u128 * k as u128;
    let big_q = ctx.big_q();
    if x > big_q / 2 {
        x as i128 - big_q as i128
    } else {
        x as i128
    }
}

/// Decodes RNS residues (`2N`, prime-major) at scale `2^log_scale` into `N` reals.
pub(crate) fn decode(ctx: &Context, residues: &[u64], log_scale: u32) -> Vec<f64> {
    let n = ctx.n;
    let m = n / 2;
    let inv_scale = 2f64.powi(-(log_scale as i32));
    let t = &ctx.fft;
    let mut w: Vec<Complex> = (0..m)
        .map(|j| {
            let a = centred_lift(ctx, residues, j) as f64 * inv_scale;
            let b = centred_lift(ctx, residues, j + m) as f64 * inv_scale;
            Complex { re: a, im: b }.mul(t.twist[j])
        })
        .collect();
    t.fft(&mut w, false);
    let mut out = Vec::with_capacity(n);
    for z in w {
        out.push(z.re);
        out.push(z.im);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::params::ParamSetId;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    #[test]
    fn encode_decode_roundtrip_every_set() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for id in ParamSetId::ALL {
            let ctx = id.context();
            let vals: Vec<f64> = (0..ctx.n - 3)
                .map(|_| (rng.next_u32() as f64 / u32::MAX as f64 - 0.5) * 16.0)
                .collect();
            let mut res = vec![0u64; 2 * ctx.n];
            encode(ctx, &vals, ctx.log_scale, &mut res).unwrap();
            let back = decode(ctx, &res, ctx.log_scale);
            assert_eq!(back.len(), ctx.n);
            let err = vals.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-9, "{}: {err}", id.name());
            assert!(back[vals.len()..].iter().all(|v| v.abs() < 1e-9));
        }
    }

    #[test]
    fn decoding_is_the_canonical_embedding() {
        // Check decode against direct evaluation m(ζ^{4k+1}) for a small random integer polynomial.
        let ctx = ParamSetId::Gw4096.context();
        let n = ctx.n;
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let coeffs: Vec<i64> = (0..n).map(|_| (rng.next_u32() % 2001) as i64 - 1000).collect();
        let mut res = vec![0u64; 2 * n];
        for (j, &c) in coeffs.iter().enumerate() {
            res[j] = (c as i128).rem_euclid(ctx.moduli[0] as i128) as u64;
            res[n + j] = (c as i128).rem_euclid(ctx.moduli[1] as i128) as u64;
        }
        let dec = decode(ctx, &res, 0);
        for k in [0usize, 1, 17, n / 2 - 1] {
            let e = (4 * k + 1) as f64;
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &c) in coeffs.iter().enumerate() {
                let th = std::f64::consts::PI * e * j as f64 / n as f64;
                re += c as f64 * th.cos();
                im += c as f64 * th.sin();
            }
            assert!((dec[2 * k] - re).abs() < 1e-6 * (1.0 + re.abs()), "k={k}");
            assert!((dec[2 * k + 1] - im).abs() < 1e-6 * (1.0 + im.abs()), "k={k}");
        }
    }

    #[test]
    fn f64_residues_are_exact() {
        for id in ParamSetId::ALL {
            let ctx = id.context();
            for v in [
                0.0,
                -0.0,
                1.0,
                -1.0,
                12345.0,
                -(2f64.powi(53)),
                2f64.powi(60) + 2048.0,
                -3.0 * 2f64.powi(110),
            ] {
                let (a, b) = f64_to_residues(ctx, v);
                let i = v as i128;
                assert_eq!(a as i128, i.rem_euclid(ctx.moduli[0] as i128), "{v}");
                assert_eq!(b as i128, i.rem_euclid(ctx.moduli[1] as i128), "{v}");
            }
        }
    }

    #[test]
    fn rejects_bad_values() {
        let ctx = ParamSetId::Gw4096.context();
        let mut res = vec![0u64; 2 * ctx.n];
        assert!(matches!(
            encode(ctx, &[f64::NAN], ctx.log_scale, &mut res),
            Err(Error::NonFinite)
        ));
        assert!(matches!(
            encode(ctx, &[1e30], ctx.log_scale, &mut res),
            Err(Error::ValueTooLarge { .. })
        ));
        let too_many = vec![0.0; ctx.n + 1];
        assert!(matches!(
            encode(ctx, &too_many, ctx.log_scale, &mut res),
            Err(Error::TooManyValues { .. })
        ));
    }
}
