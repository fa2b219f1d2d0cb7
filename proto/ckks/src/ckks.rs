//! Single-key RNS-CKKS: keys, public-key encryption, addition, scalar multiplication, decryption.
//!
//! Ciphertexts are kept in coefficient form (what goes on the wire and what the hub adds);
//! key material is kept in NTT form for fast products.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::encoding::{decode, encode};
use crate::error::Error;
use crate::params::{Context, ParamSetId};
use crate::poly;
use crate::sampling::{gaussian, lift_small, ternary, uniform_rns};

/// A secret RNS polynomial; its words are zeroized when it is dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretPoly(pub(crate) Vec<u64>);

impl std::fmt::Debug for SecretPoly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPoly(<redacted>)")
    }
}

/// Expands the common random polynomial `a` (coefficient form) from its public 32-byte seed.
pub(crate) fn expand_crp(ctx: &Context, seed: &[u8; 32]) -> Vec<u64> {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    uniform_rns(ctx, &mut rng)
}

/// A fresh RNG seeded from the operating system.
pub fn os_rng() -> Result<ChaCha20Rng, Error> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|_| Error::Rng)?;
    let rng = ChaCha20Rng::from_seed(seed);
    seed.zeroize();
    Ok(rng)
}

/// A whole secret key `s` (single-party use and tests; the committee never assembles one).
#[derive(Debug, Clone)]
pub struct SecretKey {
    pub(crate) params: ParamSetId,
    /// `s` in NTT form.
    pub(crate) s_ntt: SecretPoly,
}

impl SecretKey {
    /// Samples a ternary secret key.
    pub fn generate<R: RngCore + CryptoRng>(params: ParamSetId, rng: &mut R) -> Self {
        let ctx = params.context();
        let mut small = ternary(rng, ctx.n);
        let mut s = SecretPoly(lift_small(ctx, &small));
        small.zeroize();
        poly::ntt_forward(ctx, &mut s.0);
        Self { params, s_ntt: s }
    }

    /// The public key `(p0, a) = (-a·s + e, a)` with `a` expanded from `crp_seed`.
    pub fn public_key<R: RngCore + CryptoRng>(&self, epoch: u64, crp_seed: [u8; 32], rng: &mut R) -> PublicKey {
        let ctx = self.params.context();
        let p0 = key_share_poly(ctx, &self.s_ntt, &crp_seed, rng);
        PublicKey::from_parts(self.params, epoch, crp_seed, p0).expect("p0 is reduced by construction")
    }

    /// Parameter set of this key.
    pub fn params(&self) -> ParamSetId {
        self.params
    }
}

/// `-a·s + e` in coefficient form, for `s` given in NTT form.
pub(crate) fn key_share_poly<R: RngCore + ?Sized>(
    ctx: &Context,
    s_ntt: &SecretPoly,
    seed: &[u8; 32],
    rng: &mut R,
) -> Vec<u64> {
    let mut a = expand_crp(ctx, seed);
    poly::ntt_forward(ctx, &mut a);
    let mut p = poly::mul_pointwise(ctx, &a, &s_ntt.0);
    poly::ntt_inverse(ctx, &mut p);
    poly::neg_assign(ctx, &mut p);
    let e = lift_small(ctx, &gaussian(rng, ctx.n));
    poly::add_assign(ctx, &mut p, &e);
    p
}

/// A (collective) public key `(p0, a)`; `a` travels as its 32-byte seed.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub(crate) params: ParamSetId,
    pub(crate) epoch: u64,
    pub(crate) crp_seed: [u8; 32],
    /// `p0` in coefficient form (wire form).
    pub(crate) p0: Vec<u64>,
    pub(crate) p0_ntt: Vec<u64>,
    pub(crate) a_ntt: Vec<u64>,
    /// Shoup quotients of `p0_ntt` and `a_ntt`.
    pub(crate) p0_shoup: Vec<u64>,
    pub(crate) a_shoup: Vec<u64>,
}

impl PublicKey {
    /// Builds a key from its wire parts, checking every residue is reduced.
    pub fn from_parts(params: ParamSetId, epoch: u64, crp_seed: [u8; 32], p0: Vec<u64>) -> Result<Self, Error> {
        let ctx = params.context();
        if !poly::is_reduced(ctx, &p0) {
            return Err(Error::Decode("public key polynomial not reduced"));
        }
        let mut p0_ntt = p0.clone();
        poly::ntt_forward(ctx, &mut p0_ntt);
        let mut a_ntt = expand_crp(ctx, &crp_seed);
        poly::ntt_forward(ctx, &mut a_ntt);
        let p0_shoup = poly::shoup_table(ctx, &p0_ntt);
        let a_shoup = poly::shoup_table(ctx, &a_ntt);
        Ok(Self {
            params,
            epoch,
            crp_seed,
            p0,
            p0_ntt,
            a_ntt,
            p0_shoup,
            a_shoup,
        })
    }

    /// Parameter set.
    pub fn params(&self) -> ParamSetId {
        self.params
    }

    /// Key epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The public seed of the common random polynomial.
    pub fn crp_seed(&self) -> [u8; 32] {
        self.crp_seed
    }
}

/// A CKKS ciphertext `(c0, c1)` in coefficient form with scale `2^log_scale`; decrypts as `c0 + c1·s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    pub(crate) params: ParamSetId,
    pub(crate) log_scale: u32,
    pub(crate) c0: Vec<u64>,
    pub(crate) c1: Vec<u64>,
}

impl Ciphertext {
    /// Parameter set.
    pub fn params(&self) -> ParamSetId {
        self.params
    }

    /// `log2` of the scale.
    pub fn log_scale(&self) -> u32 {
        self.log_scale
    }

    /// Homomorphic addition.
    pub fn add_assign(&mut self, other: &Ciphertext) -> Result<(), Error> {
        if self.params != other.params {
            return Err(Error::ParamMismatch);
        }
        if self.log_scale != other.log_scale {
            return Err(Error::ShapeMismatch("ciphertext scales differ"));
        }
        let ctx = self.params.context();
        poly::add_assign(ctx, &mut self.c0, &other.c0);
        poly::add_assign(ctx, &mut self.c1, &other.c1);
        Ok(())
    }

    /// Multiplication by an integer scalar (scale unchanged; noise and values grow by `|k|`).
    pub fn mul_integer(&mut self, k: i64) {
        let ctx = self.params.context();
        poly::mul_scalar_assign(ctx, &mut self.c0, k as i128);
        poly::mul_scalar_assign(ctx, &mut self.c1, k as i128);
    }

    /// Multiplication by a real scalar `r`, encoded as `round(r·2^bits)`: the scale grows by `2^bits`
    /// (no rescaling), so the decodable value range shrinks by the same factor.
    pub fn mul_real(&mut self, r: f64, bits: u32) -> Result<(), Error> {
        if !r.is_finite() {
            return Err(Error::NonFinite);
        }
        let ctx = self.params.context();
        if bits > 40 {
            return Err(Error::ShapeMismatch("at most 40 bits of real-scalar precision"));
        }
        let k = (r * 2f64.powi(bits as i32)).round();
        let new_log_scale = self.log_scale + bits;
        if k.abs() >= 2f64.powi(62) || new_log_scale as f64 + 2.0 >= ctx.log2_q() {
            return Err(Error::ValueTooLarge {
                value: r,
                max: 2f64.powi(62 - bits as i32),
            });
        }
        poly::mul_scalar_assign(ctx, &mut self.c0, k as i128);
        poly::mul_scalar_assign(ctx, &mut self.c1, k as i128);
        self.log_scale = new_log_scale;
        Ok(())
    }
}

/// Encrypts up to `N` reals at the parameter set's default scale.
pub fn encrypt<R: RngCore + CryptoRng>(pk: &PublicKey, values: &[f64], rng: &mut R) -> Result<Ciphertext, Error> {
    let ctx = pk.params.context();
    let mut m = vec![0u64; 2 * ctx.n];
    encode(ctx, values, ctx.log_scale, &mut m)?;
    Ok(encrypt_encoded(ctx, pk, &m, ctx.log_scale, rng))
}

/// Encrypts an encoded plaintext `m` (coefficient form): `(p0·u + e0 + m, a·u + e1)`.
pub(crate) fn encrypt_encoded<R: RngCore + ?Sized>(
    ctx: &Context,
    pk: &PublicKey,
    m: &[u64],
    log_scale: u32,
    rng: &mut R,
) -> Ciphertext {
    let mut u_small = ternary(rng, ctx.n);
    let mut u = SecretPoly(lift_small(ctx, &u_small));
    u_small.zeroize();
    poly::ntt_forward(ctx, &mut u.0);
    let mut c0 = poly::mul_pointwise_shoup(ctx, &u.0, &pk.p0_ntt, &pk.p0_shoup);
    let mut c1 = poly::mul_pointwise_shoup(ctx, &u.0, &pk.a_ntt, &pk.a_shoup);
    poly::ntt_inverse(ctx, &mut c0);
    poly::ntt_inverse(ctx, &mut c1);
    let e0 = lift_small(ctx, &gaussian(rng, ctx.n));
    let e1 = lift_small(ctx, &gaussian(rng, ctx.n));
    poly::add_assign(ctx, &mut c0, &e0);
    poly::add_assign(ctx, &mut c0, m);
    poly::add_assign(ctx, &mut c1, &e1);
    Ciphertext {
        params: pk.params,
        log_scale,
        c0,
        c1,
    }
}

/// `c1 · s` in coefficient form for `s` in NTT form.
pub(crate) fn c1_times_secret(ctx: &Context, c1: &[u64], s_ntt: &SecretPoly) -> SecretPoly {
    let mut t = SecretPoly(c1.to_vec());
    poly::ntt_forward(ctx, &mut t.0);
    poly::mul_pointwise_assign(ctx, &mut t.0, &s_ntt.0);
    poly::ntt_inverse(ctx, &mut t.0);
    t
}

/// Decrypts with a whole secret key.
pub fn decrypt(sk: &SecretKey, ct: &Ciphertext) -> Result<Vec<f64>, Error> {
    if sk.params != ct.params {
        return Err(Error::ParamMismatch);
    }
    let ctx = ct.params.context();
    let cs = c1_times_secret(ctx, &ct.c1, &sk.s_ntt);
    let mut m = ct.c0.clone();
    poly::add_assign(ctx, &mut m, &cs.0);
    Ok(decode(ctx, &m, ct.log_scale))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;

    fn max_err(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn encrypt_add_scalar_decrypt_every_set() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut vrng = ChaCha8Rng::seed_from_u64(12);
        for id in ParamSetId::ALL {
            let ctx = id.context();
            let sk = SecretKey::generate(id, &mut rng);
            let pk = sk.public_key(1, [7u8; 32], &mut rng);
            let x: Vec<f64> = (0..ctx.n)
                .map(|_| (vrng.next_u32() as f64 / u32::MAX as f64 - 0.5) * 16.0)
                .collect();
            let y: Vec<f64> = (0..ctx.n / 2).map(|i| i as f64 * 1e-3 - 1.0).collect();
            let cx = encrypt(&pk, &x, &mut rng).unwrap();
            let cy = encrypt(&pk, &y, &mut rng).unwrap();
            assert!(max_err(&decrypt(&sk, &cx).unwrap(), &x) < 1e-9);

            let mut sum = cx.clone();
            sum.add_assign(&cy).unwrap();
            let expect: Vec<f64> = (0..ctx.n).map(|i| x[i] + y.get(i).copied().unwrap_or(0.0)).collect();
            assert!(max_err(&decrypt(&sk, &sum).unwrap(), &expect) < 1e-9, "{}", id.name());

            let mut tripled = cx.clone();
            tripled.mul_integer(-3);
            let expect: Vec<f64> = x.iter().map(|v| -3.0 * v).collect();
            assert!(max_err(&decrypt(&sk, &tripled).unwrap(), &expect) < 1e-9);

            let mut scaled = cx.clone();
            scaled.mul_real(0.3125, 20).unwrap();
            assert_eq!(scaled.log_scale(), ctx.log_scale + 20);
            let expect: Vec<f64> = x.iter().map(|v| 0.3125 * v).collect();
            assert!(max_err(&decrypt(&sk, &scaled).unwrap(), &expect) < 1e-9);
            assert!(matches!(scaled.add_assign(&cx), Err(Error::ShapeMismatch(_))));
            assert!(scaled.mul_real(f64::INFINITY, 1).is_err());
            assert!(scaled.mul_real(1.0, u32::MAX).is_err());
            assert!(scaled.mul_real(1e30, 10).is_err());
        }
    }

    #[test]
    fn wrong_key_or_params_do_not_decrypt() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let sk = SecretKey::generate(ParamSetId::Gw4096, &mut rng);
        let other = SecretKey::generate(ParamSetId::Gw4096, &mut rng);
        let pk = sk.public_key(0, [1u8; 32], &mut rng);
        let x = vec![1.0; 100];
        let ct = encrypt(&pk, &x, &mut rng).unwrap();
        let wrong = decrypt(&other, &ct).unwrap();
        assert!(max_err(&wrong, &x) > 1.0);
        let sk8 = SecretKey::generate(ParamSetId::Gw8192, &mut rng);
        assert_eq!(decrypt(&sk8, &ct), Err(Error::ParamMismatch));
        let mut ct8 = encrypt(&sk8.public_key(0, [1u8; 32], &mut rng), &x, &mut rng).unwrap();
        assert_eq!(ct8.add_assign(&ct), Err(Error::ParamMismatch));
    }
}
