//! FGSM: adversarial windows from the gradient of the training loss w.r.t. the input.
//!
//! Works on scaled windows: `x' = x + ε·sign(∇ₓ BCE(score(x), y))`, i.e. one step that makes
//! the detector's answer for the true label `y` as wrong as a max-norm budget ε allows.

use candle_core::{DType, Var};

use crate::error::{Error, Result};
use crate::net::{bce_with_logits, vector, windows_tensor, Net};
use crate::{Window, FEATURE_COUNT, WINDOW};

/// Gradient of the score loss w.r.t. each scaled input window, given the true labels.
pub fn input_gradient(net: &Net, windows: &[Window], attack: &[bool]) -> Result<Vec<Window>> {
    if windows.len() != attack.len() || windows.is_empty() {
        return Err(Error::Shape(format!(
            "{} windows and {} labels",
            windows.len(),
            attack.len()
        )));
    }
    let dtype = net.dtype();
    let x = Var::from_tensor(&windows_tensor(windows, dtype)?)?;
    let y: Vec<f32> = attack.iter().map(|&a| f32::from(u8::from(a))).collect();
    let out = net.forward(x.as_tensor())?;
    let ones = vec![1.0f32; windows.len()];
    let loss = bce_with_logits(&out.score_logits, &vector(&y, dtype)?, &vector(&ones, dtype)?)?;
    let grads = loss.backward()?;
    let g = grads
        .get(x.as_tensor())
        .ok_or_else(|| Error::Data("no gradient reached the input".into()))?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(g.chunks_exact(WINDOW * FEATURE_COUNT)
        .map(|w| std::array::from_fn(|t| std::array::from_fn(|j| w[t * FEATURE_COUNT + j])))
        .collect())
}

/// FGSM on a batch of scaled windows with their true labels.
pub fn perturb_batch(net: &Net, windows: &[Window], attack: &[bool], eps: f32) -> Result<Vec<Window>> {
    let grads = input_gradient(net, windows, attack)?;
    Ok(windows
        .iter()
        .zip(grads)
        .map(|(w, g)| std::array::from_fn(|t| std::array::from_fn(|j| w[t][j] + eps * sign(g[t][j]))))
        .collect())
}

/// The lowest scaled value each feature can take: raw values are counts, sizes, times and
/// rates (never below 0), except the TCP initial windows, which are −1 when no packet set one.
pub fn scaled_floor(scaler: &crate::Scaler) -> [f32; FEATURE_COUNT] {
    std::array::from_fn(|j| {
        let lowest = if gatewatch_proto::features::FEATURES[j].name.starts_with("Init_Win") {
            -1.0
        } else {
            0.0
        };
        scaler.scale_value(j, lowest)
    })
}

/// FGSM as an attacker of a live network could apply it: each scaled window moves by `eps`
/// against the detector's gradient, but no feature goes below what its raw value can be
/// (`floor`, see [`scaled_floor`]), and the first `padded[i]` rows of window `i` (padding,
/// not flows) stay as they are.
pub fn perturb_bounded(
    net: &Net,
    windows: &[Window],
    padded: &[usize],
    eps: f32,
    floor: &[f32; FEATURE_COUNT],
) -> Result<Vec<Window>> {
    let attack = vec![true; windows.len()];
    let mut out = perturb_batch(net, windows, &attack, eps)?;
    for (i, (w, original)) in out.iter_mut().zip(windows).enumerate() {
        let pad = padded.get(i).copied().unwrap_or(0).min(WINDOW);
        for (t, row) in w.iter_mut().enumerate() {
            if t < pad {
                *row = original[t];
                continue;
            }
            for (v, lo) in row.iter_mut().zip(floor) {
                *v = v.max(*lo);
            }
        }
    }
    Ok(out)
}

/// FGSM on one scaled window with its true label.
pub fn perturb(net: &Net, window: &Window, attack: bool, eps: f32) -> Result<Window> {
    let mut out = perturb_batch(net, std::slice::from_ref(window), &[attack], eps)?;
    out.pop().ok_or_else(|| Error::Data("no window".into()))
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_perturbation_keeps_padding_and_floors_and_lowers_the_score() {
        let net = Net::new(7).expect("net");
        let scaler = crate::Scaler::identity();
        let floor = scaled_floor(&scaler);
        let mut w: Window = [[0.5; FEATURE_COUNT]; WINDOW];
        w[0] = [crate::PAD_VALUE; FEATURE_COUNT];
        w[1] = [0.0; FEATURE_COUNT];
        let out = perturb_bounded(&net, &[w], &[1], 0.25, &floor).expect("fgsm");
        assert_eq!(out[0][0], w[0], "padding rows are not flows and do not move");
        for row in &out[0][1..] {
            for (j, v) in row.iter().enumerate() {
                assert!(*v >= floor[j], "feature {j} went below its floor: {v}");
            }
        }
        let moved = out[0][2..]
            .iter()
            .flatten()
            .zip(w[2..].iter().flatten())
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved > 0, "a step of 0.25 moves the flows");
        // Against the true label "attack", the step lowers the attack score.
        let x = |w: &Window| crate::net::windows_tensor(std::slice::from_ref(w), net.dtype()).expect("tensor");
        let before = net.predict(&x(&w)).expect("predict").0[0];
        let after = net.predict(&x(&out[0])).expect("predict").0[0];
        assert!(after <= before, "FGSM raised the score: {before} -> {after}");
    }
}
