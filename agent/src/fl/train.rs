//! One round of local training: the global model's parameters, trained with candle on the
//! local set (plus freshly synthesised attack windows) at the lowest CPU priority, measured on
//! the local validation windows before and after, and turned into a clipped update.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gatewatch_models::data::Sample;
use gatewatch_models::net::windows_tensor;
use gatewatch_models::store::{load_training_state, Metadata};
use gatewatch_models::train::TrainConfig;
use gatewatch_models::{Family, Net, Scaler, Window, FAMILIES};
use gatewatch_proto::fl::Evaluation;

/// A model as training needs it: flat parameters, scaler, metadata.
#[derive(Debug, Clone)]
pub struct Global {
    pub flat: Vec<f32>,
    pub scaler: Scaler,
    pub metadata: Metadata,
}

impl Global {
    /// Loads `dir` (it must hold `params.bin`).
    pub fn load(dir: &Path) -> Result<Global, String> {
        let (flat, scaler, metadata) = load_training_state(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Global { flat, scaler, metadata })
    }
}

/// A labelled raw window.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub window: Box<Window>,
    pub padded: u8,
    pub family: Family,
}

/// Scales windows for the network.
pub fn samples(windows: &[Labelled], scaler: &Scaler) -> Vec<Sample> {
    windows
        .iter()
        .map(|w| Sample {
            window: scaler.scale_window_padded(&w.window, w.padded as usize),
            family: w.family,
            sequence: 0,
            padded: w.padded as usize,
            weight: 1.0,
        })
        .collect()
}

/// The figures of `net` on `set` at `threshold`.
pub fn evaluate(net: &Net, set: &[Sample], threshold: f32) -> Result<Evaluation, String> {
    if set.is_empty() {
        return Ok(Evaluation::default());
    }
    let mut scores = Vec::with_capacity(set.len());
    for chunk in set.chunks(256) {
        let windows: Vec<Window> = chunk.iter().map(|s| s.window).collect();
        let x = windows_tensor(&windows, net.dtype()).map_err(|e| e.to_string())?;
        let (s, _) = net.predict(&x).map_err(|e| e.to_string())?;
        scores.extend(s);
    }
    let (mut tp, mut fp, mut tn, mut fn_) = (0u32, 0u32, 0u32, 0u32);
    let mut loss = 0.0f64;
    let mut per_family: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for (s, sample) in scores.iter().zip(set) {
        let attack = sample.family.is_attack();
        let p = f64::from(*s).clamp(1e-7, 1.0 - 1e-7);
        loss -= if attack { p.ln() } else { (1.0 - p).ln() };
        let flagged = *s >= threshold;
        match (flagged, attack) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
        if attack {
            let e = per_family.entry(sample.family.name().to_string()).or_default();
            e.0 += u32::from(flagged);
            e.1 += 1;
        }
    }
    let n = set.len() as f64;
    let precision = f64::from(tp) / f64::from((tp + fp).max(1));
    let recall = f64::from(tp) / f64::from((tp + fn_).max(1));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else if tp + fp + fn_ == 0 {
        // Only benign windows, none flagged: nothing was missed.
        1.0
    } else {
        0.0
    };
    Ok(Evaluation {
        windows: set.len() as u32,
        loss: loss / n,
        accuracy: f64::from(tp + tn) / n,
        f1,
        recall: per_family
            .into_iter()
            .map(|(k, (hit, all))| (k, f64::from(hit) / f64::from(all.max(1))))
            .collect(),
    })
}

/// What a round of local training produced.
#[derive(Debug, Clone)]
pub struct Trained {
    /// `local − global`, clipped.
    pub update: Vec<f32>,
    /// The update's L2 norm before clipping.
    pub norm: f64,
    pub before: Evaluation,
    pub after: Evaluation,
    pub seconds: f64,
    pub epochs_run: u32,
}

/// The order's training settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub epochs: u32,
    pub learning_rate: f64,
    pub batch_size: u32,
    pub clip_norm: f32,
    pub max_seconds: Duration,
    pub seed: u64,
}

/// Trains from `global` on `train`, measures on `validation`. Runs on the calling thread,
/// which it first moves to the lowest priority (nice 19), so capture and scoring keep the CPU.
pub fn train_round(global: &Global, train: &[Sample], validation: &[Sample], s: Settings) -> Result<Trained, String> {
    lower_priority();
    if train.is_empty() {
        return Err("the local training set is empty".into());
    }
    let started = Instant::now();
    let net = Net::from_flat(&global.flat).map_err(|e| e.to_string())?;
    let threshold = global.metadata.threshold;
    let before = evaluate(&net, validation, threshold)?;
    let config = TrainConfig {
        epochs: 1,
        batch_size: s.batch_size.max(1) as usize,
        learning_rate: s.learning_rate,
        // One epoch per call (so the time bound can stop between epochs): a constant rate.
        final_rate_fraction: 1.0,
        patience: usize::MAX,
        validation_fraction: 0.0,
        family_weight: 1.0,
        max_windows_per_sequence: usize::MAX,
        seed: s.seed,
        split_seed: s.seed,
        scaling: Default::default(),
    };
    let mut epochs_run = 0;
    for epoch in 0..s.epochs.max(1) {
        if epoch > 0 && started.elapsed() >= s.max_seconds {
            tracing::warn!(
                epochs_run,
                limit_secs = s.max_seconds.as_secs(),
                "local training stopped at its time limit"
            );
            break;
        }
        let config = TrainConfig {
            seed: s.seed.wrapping_add(u64::from(epoch)),
            ..config.clone()
        };
        gatewatch_models::train::train(&net, train, &[], &config).map_err(|e| e.to_string())?;
        epochs_run += 1;
    }
    let after = evaluate(&net, validation, threshold)?;
    let local = net.to_flat().map_err(|e| e.to_string())?;
    let mut update: Vec<f32> = local.iter().zip(&global.flat).map(|(l, g)| l - g).collect();
    if update.iter().any(|v| !v.is_finite()) {
        return Err("training diverged: the update is not finite".into());
    }
    let norm = update.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
    let clip = f64::from(s.clip_norm);
    if clip > 0.0 && norm > clip {
        let k = (clip / norm) as f32;
        update.iter_mut().for_each(|v| *v *= k);
    }
    Ok(Trained {
        update,
        norm,
        before,
        after,
        seconds: started.elapsed().as_secs_f64(),
        epochs_run,
    })
}

/// Figures of another model (the candidate of `if_better`) on the same validation windows.
pub fn evaluate_model(model: &Global, validation: &[Sample]) -> Result<Evaluation, String> {
    let net = Net::from_flat(&model.flat).map_err(|e| e.to_string())?;
    evaluate(&net, validation, model.metadata.threshold)
}

/// Nice 19 for this thread (and the training pool it starts, which inherits it).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
            tracing::debug!(error = %e, "could not lower the training thread's priority");
        }
    }
}

/// The family names in output order (for reports that list every family).
pub fn family_names() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.name()).collect()
}
