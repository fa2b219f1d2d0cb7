//! Operations on RNS polynomials stored as `2N` words, prime-major (`[residues mod q0 | residues mod q1]`).

use crate::arith::{add_mod, mul_mod, mul_shoup, shoup, sub_mod};
use crate::params::Context;

/// `a += b`.
pub(crate) fn add_assign(ctx: &Context, a: &mut [u64], b: &[u64]) {
    let n = ctx.n;
    for (l, &q) in ctx.moduli.iter().enumerate() {
        for (x, &y) in a[l * n..(l + 1) * n].iter_mut().zip(&b[l * n..(l + 1) * n]) {
            *x = add_mod(*x, y, q);
        }
    }
}

/// `a -= b`.
#[cfg(test)]
pub(crate) fn sub_assign(ctx: &Context, a: &mut [u64], b: &[u64]) {
    let n = ctx.n;
    for (l, &q) in ctx.moduli.iter().enumerate() {
        for (x, &y) in a[l * n..(l + 1) * n].iter_mut().zip(&b[l * n..(l + 1) * n]) {
            *x = sub_mod(*x, y, q);
        }
    }
}

/// `a = -a`.
pub(crate) fn neg_assign(ctx: &Context, a: &mut [u64]) {
    let n = ctx.n;
    for (l, &q) in ctx.moduli.iter().enumerate() {
        for x in a[l * n..(l + 1) * n].iter_mut() {
            *x = sub_mod(0, *x, q);
        }
    }
}

/// `a *= c` for a signed integer scalar.
pub(crate) fn mul_scalar_assign(ctx: &Context, a: &mut [u64], c: i128) {
    let n = ctx.n;
    for (l, &q) in ctx.moduli.iter().enumerate() {
        let w = c.rem_euclid(q as i128) as u64;
        let ws = shoup(w, q);
        for x in a[l * n..(l + 1) * n].iter_mut() {
            *x = mul_shoup(*x, w, ws, q);
        }
    }
}

/// `a ⊙= b` (both in NTT form).
pub(crate) fn mul_pointwise_assign(ctx: &Context, a: &mut [u64], b: &[u64]) {
    let n = ctx.n;
    for (l, &q) in ctx.moduli.iter().enumerate() {
        for (x, &y) in a[l * n..(l + 1) * n].iter_mut().zip(&b[l * n..(l + 1) * n]) {
            *x = mul_mod(*x, y, q);
        }
    }
}

/// Shoup quotients of a constant polynomial, for [`mul_pointwise_shoup`].
pub(crate) fn shoup_table(ctx: &Context, w: &[u64]) -> Vec<u64> {
    let n = ctx.n;
    let mut out = Vec::with_capacity(2 * n);
    for (l, &q) in ctx.moduli.iter().enumerate() {
        out.extend(w[l * n..(l + 1) * n].iter().map(|&x| shoup(x, q)));
    }
    out
}

/// Returns `a ⊙ w` (NTT form) for a constant `w` with precomputed Shoup quotients `ws`.
pub(crate) fn mul_pointwise_shoup(ctx: &Context, a: &[u64], w: &[u64], ws: &[u64]) -> Vec<u64> {
    let n = ctx.n;
    let mut out = Vec::with_capacity(2 * n);
    for (l, &q) in ctx.moduli.iter().enumerate() {
        let r = l * n..(l + 1) * n;
        out.extend(
            a[r.clone()]
                .iter()
                .zip(&w[r.clone()])
                .zip(&ws[r])
                .map(|((&x, &w), &s)| mul_shoup(x, w, s, q)),
        );
    }
    out
}

/// Returns `a ⊙ b` (both in NTT form).
pub(crate) fn mul_pointwise(ctx: &Context, a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = a.to_vec();
    mul_pointwise_assign(ctx, &mut out, b);
    out
}

/// Coefficient form → NTT form, every prime.
pub(crate) fn ntt_forward(ctx: &Context, a: &mut [u64]) {
    let n = ctx.n;
    for (l, t) in ctx.ntt.iter().enumerate() {
        t.forward(&mut a[l * n..(l + 1) * n]);
    }
}

/// NTT form → coefficient form, every prime.
pub(crate) fn ntt_inverse(ctx: &Context, a: &mut [u64]) {
    let n = ctx.n;
    for (l, t) in ctx.ntt.iter().enumerate() {
        t.inverse(&mut a[l * n..(l + 1) * n]);
    }
}

/// True if every residue is below its prime.
pub(crate) fn is_reduced(ctx: &Context, a: &[u64]) -> bool {
    a.len() == 2 * ctx.n
        && ctx
            .moduli
            .iter()
            .enumerate()
            .all(|(l, &q)| a[l * ctx.n..(l + 1) * ctx.n].iter().all(|&x| x < q))
}
