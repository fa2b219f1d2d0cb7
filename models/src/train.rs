//! Training: weighted BCE + cross-entropy, Adam with a cosine learning-rate decay, class
//! weights, early stopping, one thread.
//!
//! The decay matters: at a constant rate the validation loss swung by 2-3x between epochs,
//! so early stopping kept a near-random epoch.
//!
//! Everything random comes from two seeds: the validation split from `split_seed`,
//! initialisation and batch order from `seed`. Training runs in a private one-thread pool:
//! on this small network candle is faster on one thread than on two, and a gateway's capture
//! path keeps the other cores.

use candle_core::DType;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{samples_capped, FlowSequence, Sample};
use crate::error::{Error, Result};
use crate::net::{bce_with_logits, cross_entropy, one_hot, vector, windows_tensor, Net};
use crate::scaler::{Scaler, Transform};
use crate::FAMILY_COUNT;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Most epochs to run.
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Where the cosine decay ends, as a share of `learning_rate` (1.0: a constant rate).
    #[serde(default = "default_final_rate")]
    pub final_rate_fraction: f64,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// Share of sequences (or windows, with fewer than 4 sequences) held out for validation.
    pub validation_fraction: f64,
    /// Weight of the family cross-entropy next to the binary loss.
    pub family_weight: f64,
    /// Most windows taken from one sequence (evenly spaced).
    pub max_windows_per_sequence: usize,
    /// Initialisation and batch order.
    pub seed: u64,
    /// Draws the validation split, apart from `seed`, so that runs of different seeds are
    /// judged on the same validation windows.
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
    /// How the scaler compresses raw features (absent in reports of older runs: linear).
    #[serde(default)]
    pub scaling: Transform,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 64,
            learning_rate: 1e-3,
            final_rate_fraction: default_final_rate(),
            patience: 4,
            validation_fraction: 0.2,
            family_weight: 1.0,
            max_windows_per_sequence: usize::MAX,
            seed: 1,
            split_seed: default_split_seed(),
            scaling: Transform::SignedLog,
        }
    }
}

fn default_split_seed() -> u64 {
    1
}

fn default_final_rate() -> f64 {
    0.02
}

/// The learning rate after `done` of `total` steps: cosine from `start` down to `start * end_fraction`.
pub fn cosine_rate(start: f64, end_fraction: f64, done: usize, total: usize) -> f64 {
    let progress = if total <= 1 {
        0.0
    } else {
        (done as f64 / (total - 1) as f64).min(1.0)
    };
    let end = start * end_fraction;
    end + (start - end) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    /// `None` without a validation set.
    pub validation_loss: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs: Vec<EpochReport>,
    /// Epoch whose parameters were kept (1-based).
    pub best_epoch: usize,
    pub train_windows: usize,
    pub validation_windows: usize,
}

/// Per-class loss weights, inversely proportional to class frequency (capped at 100).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassWeights {
    pub attack: f32,
    pub benign: f32,
    pub family: [f32; FAMILY_COUNT],
}

impl ClassWeights {
    pub fn from_samples(samples: &[Sample]) -> ClassWeights {
        let n = samples.len().max(1) as f32;
        let mut counts = [0usize; FAMILY_COUNT];
        for s in samples {
            counts[s.family.index()] += 1;
        }
        let attacks = n - counts[0] as f32;
        let balanced = |count: f32, classes: f32| {
            if count > 0.0 {
                (n / (classes * count)).min(100.0)
            } else {
                0.0
            }
        };
        let present = counts.iter().filter(|c| **c > 0).count().max(1) as f32;
        ClassWeights {
            attack: balanced(attacks, 2.0),
            benign: balanced(counts[0] as f32, 2.0),
            family: counts.map(|c| balanced(c as f32, present)),
        }
    }
}

/// Fits the scaler on the training sequences, splits, trains a new network from the seed.
pub fn fit(sequences: &[FlowSequence], config: &TrainConfig) -> Result<(Net, Scaler, TrainReport)> {
    let (train_seqs, val_seqs) = split_sequences(sequences, config.validation_fraction, config.split_seed);
    let scaler = Scaler::fit(
        train_seqs.iter().flat_map(|s| s.flows.iter().map(|f| &f.features)),
        config.scaling,
    )?;
    let cap = config.max_windows_per_sequence;
    let mut train_set = samples_capped(&train_seqs, &scaler, cap);
    let mut val_set = samples_capped(&val_seqs, &scaler, cap);
    if val_seqs.is_empty() {
        // Too few sequences to hold whole ones out: hold out windows instead.
        (train_set, val_set) = split_windows(train_set, config.validation_fraction, config.split_seed);
    }
    if train_set.is_empty() {
        return Err(Error::Data(format!(
            "no training windows: sequences need at least {} flows",
            crate::WINDOW
        )));
    }
    let net = Net::new(config.seed)?;
    let report = train(&net, &train_set, &val_set, config)?;
    Ok((net, scaler, report))
}

/// Whole sequences for validation when there are at least 4, else none.
fn split_sequences(sequences: &[FlowSequence], fraction: f64, seed: u64) -> (Vec<FlowSequence>, Vec<FlowSequence>) {
    if sequences.len() < 4 || fraction <= 0.0 {
        return (sequences.to_vec(), Vec::new());
    }
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed));
    let held = ((sequences.len() as f64 * fraction).round() as usize).clamp(1, sequences.len() - 1);
    let val = order[..held].iter().map(|&i| sequences[i].clone()).collect();
    let train = order[held..].iter().map(|&i| sequences[i].clone()).collect();
    (train, val)
}

fn split_windows(mut all: Vec<Sample>, fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed));
    let held = (all.len() as f64 * fraction).round() as usize;
    let train = all.split_off(held.min(all.len()));
    (train, all)
}

/// Trains `net` in place. With a validation set, stops early and leaves the best epoch's
/// parameters in `net`; without one, runs `config.epochs` (an FL round).
pub fn train(net: &Net, train_set: &[Sample], val_set: &[Sample], config: &TrainConfig) -> Result<TrainReport> {
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(Error::Data("batch size and epochs must be positive".into()));
    }
    if !(config.final_rate_fraction > 0.0 && config.final_rate_fraction <= 1.0) {
        return Err(Error::Data(format!(
            "final learning-rate fraction must be in (0, 1], got {}",
            config.final_rate_fraction
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::Data(format!("thread pool: {e}")))?;
    pool.install(|| train_here(net, train_set, val_set, config))
}

fn train_here(net: &Net, train_set: &[Sample], val_set: &[Sample], config: &TrainConfig) -> Result<TrainReport> {
    let weights = ClassWeights::from_samples(train_set);
    let mut opt = AdamW::new(
        net.vars().to_vec(),
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let mut report = TrainReport {
        epochs: Vec::new(),
        best_epoch: 0,
        train_windows: train_set.len(),
        validation_windows: val_set.len(),
    };
    let mut best: Option<(f64, Vec<f32>)> = None;
    let mut stale = 0;
    let total_steps = config.epochs * train_set.len().div_ceil(config.batch_size);
    let mut step = 0;
    tracing::info!(
        train_windows = train_set.len(),
        validation_windows = val_set.len(),
        epochs = config.epochs,
        "training"
    );
    for epoch in 1..=config.epochs {
        let started = std::time::Instant::now();
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(config.batch_size) {
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &train_set[i]).collect();
            let loss = batch_loss(net, &batch, &weights, config.family_weight)?;
            opt.set_learning_rate(cosine_rate(
                config.learning_rate,
                config.final_rate_fraction,
                step,
                total_steps,
            ));
            step += 1;
            opt.backward_step(&loss)?;
            total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * batch.len() as f64;
        }
        let train_loss = total / train_set.len().max(1) as f64;
        let validation_loss = if val_set.is_empty() {
            None
        } else {
            Some(loss_over(net, val_set, &weights, config)?)
        };
        tracing::info!(
            epoch,
            train_loss,
            validation_loss,
            learning_rate = opt.learning_rate(),
            seconds = started.elapsed().as_secs_f64(),
            "epoch done"
        );
        report.epochs.push(EpochReport {
            epoch,
            train_loss,
            validation_loss,
        });
        let Some(v) = validation_loss else {
            report.best_epoch = epoch;
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| v < *b) {
            best = Some((v, net.to_flat()?));
            report.best_epoch = epoch;
            stale = 0;
        } else {
            stale += 1;
            if stale >= config.patience {
                break;
            }
        }
    }
    if let Some((_, flat)) = best {
        net.set_flat(&flat)?;
    }
    Ok(report)
}

/// The training loss of one batch.
pub fn batch_loss(
    net: &Net,
    batch: &[&Sample],
    weights: &ClassWeights,
    family_weight: f64,
) -> Result<candle_core::Tensor> {
    let dtype = net.dtype();
    let windows: Vec<crate::Window> = batch.iter().map(|s| s.window).collect();
    let x = windows_tensor(&windows, dtype)?;
    let y: Vec<f32> = batch
        .iter()
        .map(|s| f32::from(u8::from(s.family.is_attack())))
        .collect();
    let w_score: Vec<f32> = batch
        .iter()
        .map(|s| {
            if s.family.is_attack() {
                weights.attack
            } else {
                weights.benign
            }
        })
        .collect();
    let families: Vec<usize> = batch.iter().map(|s| s.family.index()).collect();
    let w_family: Vec<f32> = families.iter().map(|&f| weights.family[f]).collect();
    let out = net.forward(&x)?;
    let bce = bce_with_logits(&out.score_logits, &vector(&y, dtype)?, &vector(&w_score, dtype)?)?;
    let ce = cross_entropy(
        &out.family_logits,
        &one_hot(&families, dtype)?,
        &vector(&w_family, dtype)?,
    )?;
    Ok((bce + (ce * family_weight)?)?)
}

fn loss_over(net: &Net, set: &[Sample], weights: &ClassWeights, config: &TrainConfig) -> Result<f64> {
    let mut total = 0.0;
    for chunk in set.chunks(256) {
        let batch: Vec<&Sample> = chunk.iter().collect();
        let loss = batch_loss(net, &batch, weights, config.family_weight)?;
        total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * batch.len() as f64;
    }
    Ok(total / set.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::{cosine_rate, fit, TrainConfig};
    use crate::data::{FlowSequence, LabelledFlow};
    use crate::family::Family;
    use crate::FEATURE_COUNT;

    /// Sequences of 10 to 21 flows: how many windows are held out tells which were.
    fn sequences() -> Vec<FlowSequence> {
        (0..12)
            .map(|s| FlowSequence {
                name: format!("seq-{s}"),
                flows: (0..10 + s)
                    .map(|i| LabelledFlow {
                        features: [((s * 31 + i) % 7) as f64; FEATURE_COUNT],
                        family: if s % 2 == 0 { Family::Benign } else { Family::Scan },
                    })
                    .collect(),
            })
            .collect()
    }

    fn held_out(seed: u64, split_seed: u64) -> usize {
        let config = TrainConfig {
            epochs: 1,
            seed,
            split_seed,
            ..TrainConfig::default()
        };
        fit(&sequences(), &config).expect("fit").2.validation_windows
    }

    #[test]
    fn the_validation_split_follows_the_split_seed_not_the_training_seed() {
        assert_eq!(held_out(1, 3), held_out(2, 3));
        let splits: std::collections::BTreeSet<usize> = (1..=6).map(|split| held_out(1, split)).collect();
        assert!(
            splits.len() > 1,
            "every split seed held out the same windows: {splits:?}"
        );
    }

    #[test]
    fn cosine_rate_falls_from_start_to_the_floor() {
        let rates: Vec<f64> = (0..101).map(|step| cosine_rate(1e-3, 0.02, step, 101)).collect();
        assert!((rates[0] - 1e-3).abs() < 1e-12);
        assert!((rates[50] - (2e-5 + (1e-3 - 2e-5) * 0.5)).abs() < 1e-12);
        assert!((rates[100] - 2e-5).abs() < 1e-12);
        assert!(rates.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn a_fraction_of_one_keeps_the_rate_constant() {
        assert!((0..10).all(|step| (cosine_rate(5e-4, 1.0, step, 10) - 5e-4).abs() < 1e-15));
        assert_eq!(cosine_rate(5e-4, 0.1, 0, 1), 5e-4);
    }
}
