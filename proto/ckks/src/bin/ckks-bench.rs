//! Benchmark: encrypt + serialise a 50,000-parameter update, hub-side add, collective decryption, for every
//! parameter set, next to the TenSEAL anchor measured in the same run.
//!
//! Run with `cargo run --release -p gatewatch-ckks --bin ckks-bench`. The TenSEAL side runs
//! `bench/tenseal_anchor.py` with the Python of `$TENSEAL_PYTHON`, else
//! `/var/cache/gatewatch-venv-tenseal/bin/python`; when that fails the anchor is skipped loudly.

use std::process::Command;
use std::time::Instant;

use gatewatch_ckks::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const PARAMS: usize = 50_000;
const REPEATS: usize = 7;
const UPDATES: usize = 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64() * 1e3)
}

struct Ours {
    name: &'static str,
    n: usize,
    enc_ms: f64,
    bytes: usize,
}

fn bench_set(params: ParamSetId, rng: &mut ChaCha20Rng) -> Result<Ours, Error> {
    let ctx = params.context();
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let config = CommitteeConfig::new(params, 1, 3, 2, seed)?;
    let (keys, keygen_ms) = ms(|| -> Result<_, Error> {
        let kg: Vec<MemberKeygen> = (1..=3)
            .map(|i| MemberKeygen::new(&config, i, rng))
            .collect::<Result<_, _>>()?;
        let pk = collective_public_key(&config, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>())?;
        let mut received = Vec::new();
        for j in 1..=3 {
            received.push(kg.iter().map(|m| m.share_for(j)).collect::<Result<Vec<_>, _>>()?);
        }
        let members: Vec<CommitteeMember> = kg
            .into_iter()
            .zip(received)
            .map(|(m, s)| m.finish(&s, 1))
            .collect::<Result<_, _>>()?;
        Ok((pk, members))
    });
    let (pk, mut members) = keys?;

    let values: Vec<f32> = (0..PARAMS)
        .map(|_| (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0)
        .collect();
    let mut enc = Vec::new();
    let mut enc_only = Vec::new();
    let mut ser_only = Vec::new();
    let mut bytes = 0;
    for _ in 0..REPEATS {
        let t0 = Instant::now();
        let u = encrypt_update_with_rng(&pk, &values, 1, rng)?;
        let t1 = Instant::now();
        bytes = u.to_bytes().len();
        let t2 = Instant::now();
        enc.push((t2 - t0).as_secs_f64() * 1e3);
        enc_only.push((t1 - t0).as_secs_f64() * 1e3);
        ser_only.push((t2 - t1).as_secs_f64() * 1e3);
    }
    let enc_ms = median(enc);

    // Hub: decode + add, and add alone, over UPDATES updates.
    let mut agg = Aggregate::new(params, 1, 1, PARAMS)?;
    let updates: Vec<Vec<u8>> = (0..UPDATES)
        .map(|i| encrypt_update_with_rng(&pk, &values, i as u32 + 1, rng).map(|u| u.to_bytes()))
        .collect::<Result<_, _>>()?;
    let mut decode_ms = Vec::new();
    let mut add_ms = Vec::new();
    let mut receipts = Vec::new();
    for (i, b) in updates.iter().enumerate() {
        let (u, t) = ms(|| EncryptedUpdate::from_bytes(b));
        let u = u?;
        decode_ms.push(t);
        let (r, t) = ms(|| agg.add(&u));
        r?;
        add_ms.push(t);
        receipts.push(u.receipt(1, &format!("agent-{i}")));
    }

    let req = agg.decryption_request(receipts, 1, &[1, 3]);
    let (s1, t1) = ms(|| members[0].partial_decrypt(&req, rng));
    let (s3, t3) = ms(|| members[2].partial_decrypt(&req, rng));
    let shares = vec![s1?, s3?];
    let (avg, comb_ms) = ms(|| agg.combine_f64(&shares));
    let avg = avg?;
    let err = avg
        .iter()
        .zip(&values)
        .map(|(a, &v)| (a - v as f64).abs())
        .fold(0.0, f64::max);
    let total = agg.total_weight() as f64;
    let sum_err = agg
        .combine_sum_f64(&shares)?
        .iter()
        .zip(&values)
        .map(|(a, &v)| (a - v as f64 * total).abs())
        .fold(0.0, f64::max);

    println!(
        "{:>9}  N={:<5} log2Q={:.1} scale=2^{}  keygen(3 members) {:7.1} ms",
        params.name(),
        ctx.n,
        ctx.log2_q(),
        ctx.log_scale,
        keygen_ms
    );
    println!(
        "           encrypt+serialise 50k: {:8.2} ms  {:>9} bytes ({} ciphertexts; encrypt {:.2} ms, serialise {:.2} ms)",
        enc_ms,
        bytes,
        PARAMS.div_ceil(ctx.n),
        median(enc_only),
        median(ser_only)
    );
    println!(
        "           hub per update: decode {:6.3} ms, add {:6.3} ms   (median of {UPDATES})",
        median(decode_ms),
        median(add_ms)
    );
    println!(
        "           decryption share {:7.2} ms / member; combine+decode {:7.2} ms",
        (t1 + t3) / 2.0,
        comb_ms,
    );
    println!(
        "           after smudged 2-of-3 decryption: max |sum - exact| = {sum_err:.2e}, max |avg - exact| = {err:.2e}"
    );
    Ok(Ours {
        name: params.name(),
        n: ctx.n,
        enc_ms,
        bytes,
    })
}

type AnchorRow = (String, usize, f64, usize, f64);

fn tenseal() -> Option<Vec<AnchorRow>> {
    let python =
        std::env::var("TENSEAL_PYTHON").unwrap_or_else(|_| "/var/cache/gatewatch-venv-tenseal/bin/python".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/tenseal_anchor.py");
    let out = match Command::new(&python).arg(script).arg(REPEATS.to_string()).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "!!! SKIP TenSEAL anchor: {python} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            println!("!!! SKIP TenSEAL anchor: cannot run {python}: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("\"skip\"") {
        println!("!!! SKIP TenSEAL anchor: {}", text.trim());
        return None;
    }
    // Minimal parsing of the script's flat JSON lines.
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        let rest = &line[start..];
        if let Some(quoted) = rest.strip_prefix('"') {
            return Some(quoted[..quoted.find('"')?].to_string());
        }
        let end = rest.find([',', '}'])?;
        Some(rest[..end].trim().to_string())
    };
    let rows: Vec<_> = text
        .lines()
        .filter_map(|l| {
            Some((
                field(l, "config")?,
                field(l, "n")?.parse().ok()?,
                field(l, "encrypt_serialize_ms")?.parse().ok()?,
                field(l, "bytes")?.parse().ok()?,
                field(l, "max_err")?.parse().ok()?,
            ))
        })
        .collect();
    if rows.is_empty() {
        println!("!!! SKIP TenSEAL anchor: no output");
        return None;
    }
    Some(rows)
}

fn main() -> Result<(), Error> {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    println!("gatewatch-ckks bench: {PARAMS} parameters, weight 1..{UPDATES}, 2-of-3 committee, medians of {REPEATS}");
    let mut ours = Vec::new();
    for params in ParamSetId::ALL {
        ours.push(bench_set(params, &mut rng)?);
    }
    println!();
    match tenseal() {
        None => {}
        Some(rows) => {
            for (name, n, t, b, e) in &rows {
                println!("{name:>30}: encrypt+serialise 50k {t:8.2} ms  {b:>9} bytes; fresh max error {e:.2e}");
                if let Some(o) = ours.iter().find(|o| o.n == *n) {
                    println!(
                        "{:>30}  {} / TenSEAL: time {:.3}x (target ≤ 0.5), bytes {:.3}x (target ≤ 1)",
                        "",
                        o.name,
                        o.enc_ms / t,
                        o.bytes as f64 / *b as f64
                    );
                }
            }
        }
    }
    Ok(())
}
