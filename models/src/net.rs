//! The CNN-LSTM in candle, for training, FGSM and federated learning.
//!
//! `[B, 10, 78]` scaled features → Conv1d over time (78→64, k=3, pad 1) → ReLU →
//! MaxPool(2) → LSTM(64) → last hidden state → `score` logit (sigmoid: attack probability)
//! and `family` logits (softmax over [`crate::FAMILIES`]).
//!
//! Two layers are written by hand because candle's CPU backward passes for them are wrong
//! (see `shared/reference/README.md`): the convolution as im2col + matmul on the usual
//! `[out, in, k]` weight, and the max-pool as a reshape to `[B, T/2, 2, C]` and a max over
//! the pair axis. The LSTM is also ours (one input projection for all steps, then the
//! recurrence) with candle-nn's layout and gate order i, f, g, o; a test checks it against
//! `candle_nn::LSTM`.

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::params::{self, HIDDEN, KERNEL, PARAMS, PARAM_COUNT, POOL};
use crate::{FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// The network's parameters as candle variables, in [`PARAMS`] order.
#[derive(Debug, Clone)]
pub struct Net {
    vars: Vec<Var>,
    dtype: DType,
}

/// Outputs of a forward pass.
#[derive(Debug, Clone)]
pub struct Output {
    /// `[B]` logits of the attack probability.
    pub score_logits: Tensor,
    /// `[B, FAMILY_COUNT]` family logits.
    pub family_logits: Tensor,
}

impl Net {
    /// A freshly initialised network (PyTorch's defaults: uniform ±1/√fan_in), fully
    /// determined by `seed`.
    pub fn new(seed: u64) -> Result<Self> {
        Self::with_dtype(seed, DType::F32)
    }

    /// As [`Net::new`] in another precision (tests check gradients in f64).
    pub fn with_dtype(seed: u64, dtype: DType) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut flat = Vec::with_capacity(PARAM_COUNT);
        for p in PARAMS {
            // The LSTM and both heads read the 64-wide hidden state.
            let fan_in = if p.name.starts_with("conv.") {
                FEATURE_COUNT * KERNEL
            } else {
                HIDDEN
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            flat.extend((0..p.len()).map(|_| rng.gen_range(-bound..bound)));
        }
        Self::from_flat_dtype(&flat, dtype)
    }

    /// A network holding the given flat parameters.
    pub fn from_flat(flat: &[f32]) -> Result<Self> {
        Self::from_flat_dtype(flat, DType::F32)
    }

    fn from_flat_dtype(flat: &[f32], dtype: DType) -> Result<Self> {
        params::check_len(flat)?;
        let vars = params::offsets()
            .into_iter()
            .zip(PARAMS)
            .map(|(range, spec)| {
                let t = Tensor::from_slice(&flat[range], spec.shape, &Device::Cpu)?.to_dtype(dtype)?;
                Ok(Var::from_tensor(&t)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Net { vars, dtype })
    }

    /// The parameters in flat order.
    pub fn to_flat(&self) -> Result<Vec<f32>> {
        let mut flat = Vec::with_capacity(PARAM_COUNT);
        for v in &self.vars {
            flat.extend(v.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(flat)
    }

    /// Replaces the parameters in place (optimiser state stays attached to the same vars).
    pub fn set_flat(&self, flat: &[f32]) -> Result<()> {
        params::check_len(flat)?;
        for ((var, range), spec) in self.vars.iter().zip(params::offsets()).zip(PARAMS) {
            let t = Tensor::from_slice(&flat[range], spec.shape, &Device::Cpu)?.to_dtype(self.dtype)?;
            var.set(&t)?;
        }
        Ok(())
    }

    /// The variables in [`PARAMS`] order, for an optimiser.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn p(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }

    /// Forward pass on `[B, 10, 78]` scaled features.
    pub fn forward(&self, x: &Tensor) -> Result<Output> {
        let y = conv_time(x, self.p(0), self.p(1))?.relu()?;
        let y = max_pool_time(&y)?;
        let h = lstm_last(&y, self.p(2), self.p(3), self.p(4), self.p(5))?;
        let score_logits = linear(&h, self.p(6), self.p(7))?.squeeze(1)?;
        let family_logits = linear(&h, self.p(8), self.p(9))?;
        Ok(Output {
            score_logits,
            family_logits,
        })
    }

    /// Divides the score head's logits by `score_t` and the family head's by `family_t`
    /// (temperature scaling, folded into the heads' weights and biases).
    pub fn scale_heads(&self, score_t: f64, family_t: f64) -> Result<()> {
        for (i, t) in [(6, score_t), (7, score_t), (8, family_t), (9, family_t)] {
            let scaled = (self.p(i) / t)?;
            self.vars[i].set(&scaled)?;
        }
        Ok(())
    }

    /// Attack probabilities and family probabilities for `[B, 10, 78]` scaled features.
    pub fn predict(&self, x: &Tensor) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let out = self.forward(x)?;
        let scores = candle_nn::ops::sigmoid(&out.score_logits)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let families = candle_nn::ops::softmax(&out.family_logits, D::Minus1)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        Ok((scores, families))
    }
}

/// Packs windows of scaled features into a `[B, 10, 78]` tensor.
pub fn windows_tensor(windows: &[[[f32; FEATURE_COUNT]; WINDOW]], dtype: DType) -> Result<Tensor> {
    let flat: Vec<f32> = windows.iter().flatten().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (windows.len(), WINDOW, FEATURE_COUNT), &Device::Cpu)?.to_dtype(dtype)?)
}

/// Conv1d over the time axis of `[B, T, C]`, weight `[O, C, K]`, zero padding K/2, as
/// im2col + matmul: column `k·C + c` of the unfolded input meets `weight[o, c, k]`.
pub(crate) fn conv_time(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let (o, _, k) = weight.dims3()?;
    let padded = x.pad_with_zeros(1, k / 2, k / 2)?;
    let taps = (0..k)
        .map(|j| padded.narrow(1, j, t))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let cols = Tensor::cat(&taps, 2)?.reshape((b * t, k * c))?;
    let w = weight.permute((2, 1, 0))?.contiguous()?.reshape((k * c, o))?;
    Ok(cols.matmul(&w)?.broadcast_add(bias)?.reshape((b, t, o))?)
}

/// Max-pool of width [`POOL`] over the time axis of `[B, T, C]`.
pub(crate) fn max_pool_time(x: &Tensor) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    Ok(x.reshape((b, t / POOL, POOL, c))?.max(2)?)
}

/// One-layer LSTM over `[B, S, I]` from zero state; returns the last hidden state `[B, H]`.
/// Gate blocks of the `4H` rows are i, f, g, o (candle and PyTorch).
pub(crate) fn lstm_last(x: &Tensor, w_ih: &Tensor, w_hh: &Tensor, b_ih: &Tensor, b_hh: &Tensor) -> Result<Tensor> {
    let (b, s, i) = x.dims3()?;
    let h4 = w_ih.dim(0)?;
    let hidden = h4 / 4;
    let bias = (b_ih + b_hh)?;
    // The input projection of every step at once; only the recurrence stays sequential.
    let xs = x
        .reshape((b * s, i))?
        .matmul(&w_ih.t()?)?
        .broadcast_add(&bias)?
        .reshape((b, s, h4))?;
    let w_hh_t = w_hh.t()?;
    let mut h = Tensor::zeros((b, hidden), x.dtype(), x.device())?;
    let mut c = h.clone();
    for step in 0..s {
        let gates = (xs.narrow(1, step, 1)?.squeeze(1)? + h.matmul(&w_hh_t)?)?;
        let g = gates.chunk(4, 1)?;
        let input = candle_nn::ops::sigmoid(&g[0])?;
        let forget = candle_nn::ops::sigmoid(&g[1])?;
        let cell = g[2].tanh()?;
        let output = candle_nn::ops::sigmoid(&g[3])?;
        c = ((forget * c)? + (input * cell)?)?;
        h = (output * c.tanh()?)?;
    }
    Ok(h)
}

/// `x · wᵀ + b` for `[B, I]`, `[O, I]`, `[O]`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(&w.t()?)?.broadcast_add(b)?)
}

/// Weighted binary cross-entropy on logits in the stable form
/// `max(x, 0) − x·y + log(1 + e^−|x|)`, normalised by the weight sum.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let loss = ((logits.relu()? - (logits * targets)?)? + softplus)?;
    Ok(((loss * weights)?.sum_all()? / weights.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)?)
}

/// Weighted cross-entropy of logits `[B, F]` against one-hot targets `[B, F]`; the weight of
/// a sample is `weights[i]`, the loss is normalised by the weight sum.
pub fn cross_entropy(logits: &Tensor, one_hot: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = (logp * one_hot)?.sum(1)?.neg()?;
    Ok(((nll * weights)?.sum_all()? / weights.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)?)
}

/// One-hot rows for family indices.
pub fn one_hot(families: &[usize], dtype: DType) -> Result<Tensor> {
    let mut v = vec![0f32; families.len() * FAMILY_COUNT];
    for (row, f) in families.iter().enumerate() {
        v[row * FAMILY_COUNT + f] = 1.0;
    }
    Ok(Tensor::from_vec(v, (families.len(), FAMILY_COUNT), &Device::Cpu)?.to_dtype(dtype)?)
}

/// A vector as a `[n]` tensor.
pub fn vector(v: &[f32], dtype: DType) -> Result<Tensor> {
    Ok(Tensor::from_slice(v, v.len(), &Device::Cpu)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::CONV_CHANNELS;
    use candle_core::backprop::GradStore;

    const CONV_SHAPE: (usize, usize, usize) = (CONV_CHANNELS, FEATURE_COUNT, KERNEL);

    fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize], scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    /// Compares candle's gradient of `f` with central differences on a sample of
    /// coordinates of every variable, in f64.
    fn check_grads(vars: &[Var], f: &dyn Fn() -> Tensor, label: &str) {
        let loss = f();
        let grads: GradStore = loss.backward().expect("backward");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (vi, var) in vars.iter().enumerate() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{label}: no gradient for var {vi}"))
                .flatten_all()
                .and_then(|t| t.to_vec1::<f64>())
                .expect("grad");
            let base = var
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f64>())
                .expect("values");
            let shape = var.as_tensor().shape().clone();
            let picks: Vec<usize> = (0..12.min(base.len())).map(|_| rng.gen_range(0..base.len())).collect();
            for &j in &picks {
                let eps = 1e-5;
                let mut plus = base.clone();
                plus[j] += eps;
                var.set(&Tensor::from_vec(plus, &shape, &Device::Cpu).expect("t"))
                    .expect("set");
                let lp = f().to_scalar::<f64>().expect("scalar");
                let mut minus = base.clone();
                minus[j] -= eps;
                var.set(&Tensor::from_vec(minus, &shape, &Device::Cpu).expect("t"))
                    .expect("set");
                let lm = f().to_scalar::<f64>().expect("scalar");
                var.set(&Tensor::from_vec(base.clone(), &shape, &Device::Cpu).expect("t"))
                    .expect("set");
                let numeric = (lp - lm) / (2.0 * eps);
                let tol = 1e-6 + 1e-4 * numeric.abs().max(g[j].abs());
                assert!(
                    (numeric - g[j]).abs() <= tol,
                    "{label}: var {vi} coordinate {j}: analytic {} numeric {numeric}",
                    g[j]
                );
            }
        }
    }

    fn weighted_sum(y: &Tensor, r: &Tensor) -> Tensor {
        (y * r).and_then(|t| t.sum_all()).expect("sum")
    }

    #[test]
    fn conv_gradient_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[2, WINDOW, FEATURE_COUNT], 1.0)).expect("x");
        let (o, c, k) = CONV_SHAPE;
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, c, k], 0.1)).expect("w");
        let b = Var::from_tensor(&rand_tensor(&mut rng, &[o], 0.1)).expect("b");
        let r = rand_tensor(&mut rng, &[2, WINDOW, o], 1.0);
        let f = || weighted_sum(&conv_time(&x, &w, &b).expect("conv"), &r);
        check_grads(&[x.clone(), w.clone(), b.clone()], &f, "conv");
    }

    #[test]
    fn conv_forward_matches_candle_conv1d() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x = rand_tensor(&mut rng, &[3, WINDOW, FEATURE_COUNT], 1.0);
        let (o, c, k) = CONV_SHAPE;
        let w = rand_tensor(&mut rng, &[o, c, k], 0.1);
        let b = rand_tensor(&mut rng, &[o], 0.1);
        let ours = conv_time(&x, &w, &b).expect("ours");
        // candle's forward is right; only its weight gradient is not.
        let theirs = x
            .transpose(1, 2)
            .and_then(|t| t.contiguous())
            .and_then(|t| t.conv1d(&w, 1, 1, 1, 1))
            .and_then(|t| t.broadcast_add(&b.reshape((1, o, 1))?))
            .and_then(|t| t.transpose(1, 2))
            .expect("conv1d");
        let diff = (ours - theirs)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f64>())
            .expect("diff");
        assert!(diff < 1e-10, "im2col conv differs from conv1d by {diff}");
    }

    #[test]
    fn relu_and_max_pool_gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[2, WINDOW, 8], 1.0)).expect("x");
        let r = rand_tensor(&mut rng, &[2, WINDOW / POOL, 8], 1.0);
        let f = || weighted_sum(&max_pool_time(&x.relu().expect("relu")).expect("pool"), &r);
        check_grads(std::slice::from_ref(&x), &f, "relu+maxpool");
        // The pooled value is the larger of each pair.
        let pooled = max_pool_time(x.as_tensor())
            .expect("pool")
            .to_vec3::<f64>()
            .expect("vec");
        let xs = x.as_tensor().to_vec3::<f64>().expect("x");
        assert_eq!(pooled[1][2][5], xs[1][4][5].max(xs[1][5][5]));
    }

    #[test]
    fn lstm_gradient_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (i, h) = (6, 5);
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[2, 5, i], 1.0)).expect("x");
        let w_ih = Var::from_tensor(&rand_tensor(&mut rng, &[4 * h, i], 0.5)).expect("w");
        let w_hh = Var::from_tensor(&rand_tensor(&mut rng, &[4 * h, h], 0.5)).expect("w");
        let b_ih = Var::from_tensor(&rand_tensor(&mut rng, &[4 * h], 0.5)).expect("b");
        let b_hh = Var::from_tensor(&rand_tensor(&mut rng, &[4 * h], 0.5)).expect("b");
        let r = rand_tensor(&mut rng, &[2, h], 1.0);
        let f = || weighted_sum(&lstm_last(&x, &w_ih, &w_hh, &b_ih, &b_hh).expect("lstm"), &r);
        check_grads(
            &[x.clone(), w_ih.clone(), w_hh.clone(), b_ih.clone(), b_hh.clone()],
            &f,
            "lstm",
        );
    }

    #[test]
    fn lstm_matches_candle_nn_lstm() {
        use candle_nn::rnn::{LSTMConfig, RNN};
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (i, h) = (CONV_CHANNELS, HIDDEN);
        let x = rand_tensor(&mut rng, &[3, 5, i], 1.0);
        let tensors = [
            ("weight_ih_l0", rand_tensor(&mut rng, &[4 * h, i], 0.2)),
            ("weight_hh_l0", rand_tensor(&mut rng, &[4 * h, h], 0.2)),
            ("bias_ih_l0", rand_tensor(&mut rng, &[4 * h], 0.2)),
            ("bias_hh_l0", rand_tensor(&mut rng, &[4 * h], 0.2)),
        ];
        let ours = lstm_last(&x, &tensors[0].1, &tensors[1].1, &tensors[2].1, &tensors[3].1).expect("ours");
        let map = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        let vb = candle_nn::VarBuilder::from_tensors(map, DType::F64, &Device::Cpu);
        let lstm = candle_nn::lstm(i, h, LSTMConfig::default(), vb).expect("lstm");
        let states = lstm.seq(&x).expect("seq");
        let theirs = &states[states.len() - 1].h;
        let diff = (ours - theirs)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f64>())
            .expect("diff");
        assert!(diff < 1e-10, "our LSTM differs from candle-nn's by {diff}");
    }

    #[test]
    fn heads_and_losses_gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[4, HIDDEN], 1.0)).expect("x");
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[1, HIDDEN], 0.3)).expect("w");
        let b = Var::from_tensor(&rand_tensor(&mut rng, &[1], 0.3)).expect("b");
        let fw = Var::from_tensor(&rand_tensor(&mut rng, &[FAMILY_COUNT, HIDDEN], 0.3)).expect("w");
        let fb = Var::from_tensor(&rand_tensor(&mut rng, &[FAMILY_COUNT], 0.3)).expect("b");
        let y = Tensor::new(&[1.0f64, 0.0, 1.0, 0.0], &Device::Cpu).expect("y");
        let wt = Tensor::new(&[2.0f64, 1.0, 0.5, 1.0], &Device::Cpu).expect("w");
        let oh = one_hot(&[3, 0, 8, 1], DType::F64).expect("one hot");
        let f = || {
            let s = linear(&x, &w, &b).expect("score").squeeze(1).expect("squeeze");
            let fam = linear(&x, &fw, &fb).expect("family");
            let l1 = bce_with_logits(&s, &y, &wt).expect("bce");
            let l2 = cross_entropy(&fam, &oh, &wt).expect("ce");
            (l1 + l2).expect("sum")
        };
        check_grads(
            &[x.clone(), w.clone(), b.clone(), fw.clone(), fb.clone()],
            &f,
            "heads+losses",
        );
    }

    #[test]
    fn bce_is_stable_and_correct() {
        let logits = Tensor::new(&[-200.0f32, 0.0, 3.0, 200.0], &Device::Cpu).expect("t");
        let y = Tensor::new(&[1.0f32, 1.0, 0.0, 0.0], &Device::Cpu).expect("t");
        let w = Tensor::new(&[1.0f32; 4], &Device::Cpu).expect("t");
        let loss = bce_with_logits(&logits, &y, &w).and_then(|t| t.to_scalar::<f32>().map_err(Into::into));
        let expected = (200.0 + std::f32::consts::LN_2 + (3.0 + (1.0 + (-3.0f32).exp()).ln()) + 200.0) / 4.0;
        let loss = loss.expect("loss");
        assert!(
            loss.is_finite() && (loss - expected).abs() < 1e-3,
            "{loss} vs {expected}"
        );
    }

    #[test]
    fn whole_network_gradient_matches_finite_differences() {
        let net = Net::with_dtype(11, DType::F64).expect("net");
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let x = rand_tensor(&mut rng, &[3, WINDOW, FEATURE_COUNT], 1.5);
        let y = Tensor::new(&[1.0f64, 0.0, 1.0], &Device::Cpu).expect("y");
        let w = Tensor::new(&[1.0f64, 2.0, 1.0], &Device::Cpu).expect("w");
        let oh = one_hot(&[2, 0, 5], DType::F64).expect("one hot");
        let f = || {
            let out = net.forward(&x).expect("forward");
            let l1 = bce_with_logits(&out.score_logits, &y, &w).expect("bce");
            let l2 = cross_entropy(&out.family_logits, &oh, &w).expect("ce");
            (l1 + l2).expect("sum")
        };
        check_grads(net.vars(), &f, "network");
    }

    #[test]
    fn flat_parameters_round_trip_exactly() {
        let net = Net::new(3).expect("net");
        let flat = net.to_flat().expect("flat");
        assert_eq!(flat.len(), PARAM_COUNT);
        assert_eq!(Net::from_flat(&flat).and_then(|n| n.to_flat()).expect("again"), flat);
        let other = Net::new(4).expect("net");
        assert_ne!(other.to_flat().expect("flat"), flat, "seeds must matter");
        other.set_flat(&flat).expect("set");
        assert_eq!(other.to_flat().expect("flat"), flat);
        assert_eq!(
            Net::new(3).and_then(|n| n.to_flat()).expect("again"),
            flat,
            "same seed, same net"
        );
    }
}
