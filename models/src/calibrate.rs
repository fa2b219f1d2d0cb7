//! The operating point: temperature scaling of both heads and a decision threshold chosen for
//! a benign false-positive target, on validation windows the network did not train on.
//!
//! Temperature scaling divides a head's logits by one number fitted for the least negative
//! log-likelihood (Guo et al., 2017): it changes how sure the model says it is, never which
//! window ranks above which. The division is folded into the head's weights and bias, so the
//! exported ONNX file already gives calibrated probabilities and nothing changes at the edge.
//! The threshold is the lowest score (never under 0.5) that flags at most `fp_target` of the
//! windows of the benign-only validation captures, averaged over captures: the false-positive
//! rate is chosen, recall follows. Benign windows inside attack captures do not choose it (their
//! labels come from addresses and times, and a victim's own traffic during a flood is not
//! what an operator's false alarm is), and averaging by capture keeps one long capture from
//! setting the threshold for all.

use serde::{Deserialize, Serialize};

use crate::data::Sample;
use crate::error::Result;
use crate::net::{windows_tensor, Net};

/// One bin of a reliability table: windows whose score fell in `[low, high)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub low: f64,
    pub high: f64,
    pub windows: usize,
    /// Mean score of the bin's windows.
    pub mean_score: f64,
    /// Share of them that are attacks: near `mean_score` when the scores are calibrated.
    pub attack_share: f64,
}

/// What calibration chose and how the validation windows look at that point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The score head's logits were divided by this.
    pub temperature: f64,
    /// The family head's logits were divided by this.
    pub family_temperature: f64,
    /// Benign validation windows that may be flagged, at most.
    pub fp_target: f64,
    pub threshold: f32,
    pub validation_windows: usize,
    /// Windows of the benign-only validation captures, and how many the threshold flags.
    pub benign_only_windows: usize,
    pub benign_only_flagged: usize,
    /// Every benign validation window (also those inside attack captures) flagged.
    pub validation_false_positive_rate: f64,
    pub validation_recall: f64,
    /// Expected calibration error of the score head before and after (10 equal-width bins).
    pub ece_before: f64,
    pub ece_after: f64,
    pub reliability: Vec<ReliabilityBin>,
}

/// Raw logits of both heads for scaled windows, in chunks.
pub fn logits(net: &Net, samples: &[Sample]) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let mut score = Vec::with_capacity(samples.len());
    let mut family = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(256) {
        let windows: Vec<crate::Window> = chunk.iter().map(|s| s.window).collect();
        let out = net.forward(&windows_tensor(&windows, net.dtype())?)?;
        score.extend(out.score_logits.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?);
        family.extend(out.family_logits.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?);
    }
    Ok((score, family))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean binary log-loss of `sigmoid(logit / t)`.
fn binary_nll(logits: &[f64], attack: &[bool], t: f64) -> f64 {
    let n = logits.len().max(1) as f64;
    logits
        .iter()
        .zip(attack)
        .map(|(&z, &y)| {
            // log(1 + e^-x) written to stay finite for large |x|.
            let x = if y { z / t } else { -z / t };
            (-x).max(0.0) + (-x.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / n
}

/// Mean cross-entropy of `softmax(logits / t)`.
fn family_nll(logits: &[Vec<f64>], truth: &[usize], t: f64) -> f64 {
    let n = logits.len().max(1) as f64;
    logits
        .iter()
        .zip(truth)
        .map(|(z, &k)| {
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max) / t;
            let sum: f64 = z.iter().map(|v| (v / t - max).exp()).sum();
            max + sum.ln() - z[k] / t
        })
        .sum::<f64>()
        / n
}

/// Minimises `f` over `ln t` in [-4, 4] by golden-section search (the loss is unimodal in t).
fn best_temperature(f: impl Fn(f64) -> f64) -> f64 {
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (-4f64, 4f64);
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    for _ in 0..80 {
        if f(c.exp()) < f(d.exp()) {
            b = d;
        } else {
            a = c;
        }
        c = b - ratio * (b - a);
        d = a + ratio * (b - a);
    }
    ((a + b) / 2.0).exp()
}

/// The score head's temperature for these logits and truths.
pub fn fit_temperature(logits: &[f64], attack: &[bool]) -> f64 {
    best_temperature(|t| binary_nll(logits, attack, t))
}

/// The family head's temperature.
pub fn fit_family_temperature(logits: &[Vec<f64>], truth: &[usize]) -> f64 {
    best_temperature(|t| family_nll(logits, truth, t))
}

/// The lowest threshold, never under 0.5, at which the benign-only captures' flagged shares
/// average at most `fp_target`. `captures[i]` is window `i`'s capture, `None` for windows of
/// captures with attacks.
pub fn choose_threshold_by_capture(scores: &[f64], captures: &[Option<usize>], fp_target: f64) -> f32 {
    let mut per_capture: std::collections::BTreeMap<usize, Vec<f64>> = std::collections::BTreeMap::new();
    for (s, c) in scores.iter().zip(captures) {
        if let Some(c) = c {
            per_capture.entry(*c).or_default().push(*s);
        }
    }
    if per_capture.is_empty() {
        return 0.5;
    }
    let macro_fp = |t: f64| {
        per_capture
            .values()
            .map(|s| s.iter().filter(|v| **v >= t).count() as f64 / s.len() as f64)
            .sum::<f64>()
            / per_capture.len() as f64
    };
    // The candidates are just above each benign score: the share only changes there.
    let mut candidates: Vec<f64> = per_capture.values().flatten().copied().filter(|s| *s >= 0.5).collect();
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    if macro_fp(0.5) <= fp_target {
        return 0.5;
    }
    // macro_fp falls as t rises: binary search for the first candidate that meets the target.
    let (mut lo, mut hi) = (0usize, candidates.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if macro_fp(above(candidates[mid])) <= fp_target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let t = candidates.get(lo).map_or(0.9999, |s| above(*s));
    (t as f32).clamp(0.5, 0.9999)
}

/// The smallest f32 strictly above `s`, as f64.
fn above(s: f64) -> f64 {
    let mut t = s as f32;
    while f64::from(t) <= s {
        t = next_up(t);
    }
    f64::from(t)
}

/// The smallest f32 above `x` (for positive finite x).
fn next_up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}

/// Ten equal-width bins of scores against the share of attacks in each.
pub fn reliability(scores: &[f64], attack: &[bool]) -> Vec<ReliabilityBin> {
    const BINS: usize = 10;
    let mut sums = [(0usize, 0f64, 0usize); BINS];
    for (&s, &a) in scores.iter().zip(attack) {
        let b = ((s * BINS as f64) as usize).min(BINS - 1);
        sums[b].0 += 1;
        sums[b].1 += s;
        sums[b].2 += usize::from(a);
    }
    sums.iter()
        .enumerate()
        .map(|(i, &(n, total, attacks))| ReliabilityBin {
            low: i as f64 / BINS as f64,
            high: (i + 1) as f64 / BINS as f64,
            windows: n,
            mean_score: if n > 0 { total / n as f64 } else { 0.0 },
            attack_share: if n > 0 { attacks as f64 / n as f64 } else { 0.0 },
        })
        .collect()
}

/// Expected calibration error: the windows-weighted gap between score and attack share.
pub fn expected_calibration_error(bins: &[ReliabilityBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.windows).sum();
    if n == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|b| b.windows as f64 * (b.mean_score - b.attack_share).abs())
        .sum::<f64>()
        / n as f64
}

/// Fits both temperatures on `validation`, folds them into `net`'s heads, and chooses the
/// threshold for `fp_target` on the benign-only captures (`benign_capture[i]`: window `i`'s
/// capture if it has no attack, see [`choose_threshold_by_capture`]).
pub fn calibrate(
    net: &Net,
    validation: &[Sample],
    benign_capture: &[Option<usize>],
    fp_target: f64,
) -> Result<Calibration> {
    let (score_logits, family_logits) = logits(net, validation)?;
    let attack: Vec<bool> = validation.iter().map(|s| s.family.is_attack()).collect();
    let truth: Vec<usize> = validation.iter().map(|s| s.family.index()).collect();
    let before: Vec<f64> = score_logits.iter().map(|&z| sigmoid(z)).collect();
    let temperature = fit_temperature(&score_logits, &attack);
    let family_temperature = fit_family_temperature(&family_logits, &truth);
    net.scale_heads(temperature, family_temperature)?;
    let scores: Vec<f64> = score_logits.iter().map(|&z| sigmoid(z / temperature)).collect();
    let threshold = choose_threshold_by_capture(&scores, benign_capture, fp_target);
    let benign_only: Vec<f64> = scores
        .iter()
        .zip(benign_capture)
        .filter(|(_, c)| c.is_some())
        .map(|(s, _)| *s)
        .collect();
    let benign_only_flagged = benign_only.iter().filter(|s| **s >= f64::from(threshold)).count();
    let flagged = |want: bool| {
        let of: Vec<&f64> = scores
            .iter()
            .zip(&attack)
            .filter(|(_, a)| **a == want)
            .map(|(s, _)| s)
            .collect();
        let hits = of.iter().filter(|s| ***s >= f64::from(threshold)).count();
        if of.is_empty() {
            0.0
        } else {
            hits as f64 / of.len() as f64
        }
    };
    let bins = reliability(&scores, &attack);
    Ok(Calibration {
        temperature,
        family_temperature,
        fp_target,
        threshold,
        validation_windows: validation.len(),
        benign_only_windows: benign_only.len(),
        benign_only_flagged,
        validation_false_positive_rate: flagged(false),
        validation_recall: flagged(true),
        ece_before: expected_calibration_error(&reliability(&before, &attack)),
        ece_after: expected_calibration_error(&bins),
        reliability: bins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overconfident_head_gets_a_temperature_above_one() {
        // Logits of ±6 (probability 0.998) on data that is right only 80 % of the time.
        let mut logits = Vec::new();
        let mut attack = Vec::new();
        for i in 0..1000 {
            let right = i % 5 != 0;
            let y = i % 2 == 0;
            logits.push(if y == right { 6.0 } else { -6.0 });
            attack.push(y);
        }
        let t = fit_temperature(&logits, &attack);
        // The calibrated probability for +6 should be about 0.8: 6/t = ln 4.
        assert!((6.0 / t - 4f64.ln()).abs() < 0.01, "t = {t}");
        let scores: Vec<f64> = logits.iter().map(|&z| sigmoid(z / t)).collect();
        assert!(expected_calibration_error(&reliability(&scores, &attack)) < 0.01);
    }

    #[test]
    fn the_family_temperature_calibrates_a_softmax() {
        // Three classes, the top logit 5 above the others, right 70 % of the time.
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        for i in 0..1000 {
            logits.push(vec![5.0, 0.0, 0.0]);
            truth.push(if i % 10 < 7 { 0 } else { 1 + i % 2 });
        }
        let t = fit_family_temperature(&logits, &truth);
        let p_top = 1.0 / (1.0 + 2.0 * (-5.0 / t).exp());
        assert!((p_top - 0.7).abs() < 0.01, "p = {p_top}");
    }

    #[test]
    fn the_threshold_meets_the_false_positive_target_and_never_drops_under_a_half() {
        let scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        let one_capture = vec![Some(0); 1000];
        let t = choose_threshold_by_capture(&scores, &one_capture, 0.01);
        let flagged = scores.iter().filter(|&&s| s >= f64::from(t)).count();
        assert!(flagged <= 10, "{flagged} flagged at {t}");
        assert!(flagged >= 9, "the lowest such threshold: {flagged} at {t}");
        let low: Vec<f64> = (0..100).map(|i| f64::from(i) / 1000.0).collect();
        assert_eq!(choose_threshold_by_capture(&low, &[Some(0); 100], 0.01), 0.5);
    }

    #[test]
    fn the_threshold_by_capture_averages_captures_and_ignores_attack_captures() {
        // Capture 0: 1000 windows, 10 of them at 0.875; capture 1: 10 windows, one at 0.75;
        // windows of an attack capture at 0.95 do not count.
        let mut scores = vec![0.1; 1000];
        scores[..10].fill(0.875);
        let mut captures: Vec<Option<usize>> = vec![Some(0); 1000];
        scores.extend([0.75].into_iter().chain(std::iter::repeat_n(0.2, 9)));
        captures.extend(std::iter::repeat_n(Some(1), 10));
        scores.extend([0.95; 50]);
        captures.extend(std::iter::repeat_n(None, 50));
        // At 0.5: (1 % + 10 %) / 2 = 5.5 %; above 0.75: 0.5 %; above 0.875: 0.
        assert_eq!(choose_threshold_by_capture(&scores, &captures, 0.06), 0.5);
        let t = choose_threshold_by_capture(&scores, &captures, 0.01);
        assert!(t > 0.75 && t <= 0.875, "{t}");
        let t = choose_threshold_by_capture(&scores, &captures, 0.0);
        assert!(t > 0.875 && t < 0.876, "{t}");
        assert_eq!(choose_threshold_by_capture(&[0.99], &[None], 0.0), 0.5);
    }
}
