//! Statistical sanity: fresh ciphertexts look uniform whatever they encrypt; secrets are ternary.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gatewatch_ckks::testing::{ciphertext_residues, sample_ternary};
use gatewatch_ckks::*;

/// (mean/q, variance/q²) of residues modulo prime `l`.
fn normalised_moments(ctx: &Context, poly: &[u64], l: usize) -> (f64, f64) {
    let q = ctx.moduli[l] as f64;
    let xs = &poly[l * ctx.n..(l + 1) * ctx.n];
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| x as f64 / q).sum::<f64>() / n;
    let var = xs.iter().map(|&x| (x as f64 / q - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn fresh_ciphertexts_of_different_messages_have_uniform_statistics() {
    let mut r = rng(200);
    for params in ParamSetId::ALL {
        let ctx = params.context();
        let c = committee(params, 1, 3, 2, 1, &mut r);
        let zeros = vec![0.0f64; ctx.n];
        let big: Vec<f64> = (0..ctx.n).map(|i| if i % 2 == 0 { 8.0 } else { -8.0 }).collect();
        // Uniform on [0,1): mean 1/2 (sd of the sample mean sqrt(1/12/N)), variance 1/12 (sd sqrt(1/180/N)).
        let n = ctx.n as f64;
        let tol_mean = 6.0 * (1.0 / 12.0 / n).sqrt();
        let tol_var = 6.0 * (1.0 / 180.0 / n).sqrt();
        let mut means = Vec::new();
        for msg in [&zeros, &big] {
            let ct = encrypt(&c.pk, msg, &mut r).unwrap();
            let (c0, c1) = ciphertext_residues(&ct);
            for poly in [c0, c1] {
                for l in 0..2 {
                    let (mean, var) = normalised_moments(ctx, poly, l);
                    assert!((mean - 0.5).abs() < tol_mean, "{}: mean {mean}", params.name());
                    assert!((var - 1.0 / 12.0).abs() < tol_var, "{}: var {var}", params.name());
                    means.push(mean);
                }
            }
        }
        // The two messages' c0 statistics are indistinguishable at this resolution.
        for l in 0..2 {
            assert!((means[l] - means[4 + l]).abs() < 2.0 * tol_mean);
        }
    }
}

#[test]
fn ternary_secret_frequencies() {
    let mut r = rng(201);
    let s = sample_ternary(&mut r, 300_000);
    let count = |v: i64| s.iter().filter(|&&x| x == v).count() as f64 / s.len() as f64;
    assert!(s.iter().all(|&x| (-1..=1).contains(&x)));
    // Each value has probability 1/3; sd of the frequency is sqrt(2/9/300000) ≈ 8.6e-4.
    for v in [-1, 0, 1] {
        assert!((count(v) - 1.0 / 3.0).abs() < 0.005, "P({v}) = {}", count(v));
    }
}
