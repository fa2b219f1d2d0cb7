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
