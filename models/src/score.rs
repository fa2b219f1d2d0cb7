//! Scoring with tract: the model directory, fixed-batch plans, predictions.
//!
//! Two plans are optimised once at load: batch 1 for a single ready window and batch N for
//! bursts (fixed-batch plans run 1.5–1.7× faster than a symbolic batch; partial batches are
//! padded or run one by one, whichever is cheaper). Every call runs on a fresh tract state:
//! a reused state carries the LSTM's hidden state into the next window and silently shifts
//! scores. Loading is wrapped in `catch_unwind` because model files come from uploads and
//! tract panics on some malformed graphs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::family::Family;
use crate::scaler::Scaler;
use crate::store::{self, Metadata};
use crate::{FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// Values in one window.
pub const WINDOW_VALUES: usize = WINDOW * FEATURE_COUNT;
/// Default batch of the batched plan.
pub const DEFAULT_BATCH: usize = 64;

/// One optimised tract plan with a fixed batch size.
#[derive(Debug, Clone)]
pub struct Plan {
    runnable: Arc<TypedRunnableModel>,
    batch: usize,
}

/// Raw outputs for a list of windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// Attack probability per window.
    pub scores: Vec<f32>,
    /// Family probabilities per window, in [`FAMILIES`](crate::FAMILIES) order.
    pub families: Vec<Vec<f32>>,
}

/// Which graph tract plans: the file's, or the same arithmetic rewritten for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphPlan {
    /// Convolution, pooling and LSTM written out in plain operators (see [`crate::rewrite`]).
    Rewritten,
    /// The operators as the file writes them.
    AsWritten,
}

impl Plan {
    /// Loads ONNX bytes with the batch fixed to `batch` and optimises the plan. A single
    /// window runs the graph as written (fewer, larger operators: about half the latency of
    /// the rewritten graph); batches run the rewritten graph, 1.5-1.9x the throughput.
    pub fn load(onnx: &[u8], batch: usize) -> Result<Plan> {
        let graph = if batch == 1 {
            GraphPlan::AsWritten
        } else {
            GraphPlan::Rewritten
        };
        Self::load_with(onnx, batch, graph)
    }

    /// Loads with the graph chosen by the caller; see [`GraphPlan`].
    pub fn load_with(onnx: &[u8], batch: usize, graph: GraphPlan) -> Result<Plan> {
        if batch == 0 {
            return Err(Error::Shape("batch size must be at least 1".into()));
        }
        let built = catch_unwind(AssertUnwindSafe(|| Self::build(onnx, batch, graph)));
        match built {
            Ok(plan) => plan,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(Error::LoaderPanic(msg))
            }
        }
    }

    fn build(onnx: &[u8], batch: usize, graph: GraphPlan) -> Result<Plan> {
        // The file names its batch dimension symbolically; ignoring the value info lets the
        // input fact below fix it.
        let onnx_reader = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .with_ignore_output_shapes(true);
        let mut proto = onnx_reader.proto_model_for_read(&mut &onnx[..]).map_err(Error::tract)?;
        let input_fact: InferenceFact = f32::fact([batch, WINDOW, FEATURE_COUNT]).into();
        if graph == GraphPlan::Rewritten {
            if let Some(rewritten) = crate::rewrite::for_tract(&proto, input_fact.clone())? {
                proto = rewritten;
            }
        }
        let model = onnx_reader.model_for_proto_model(&proto).map_err(Error::tract)?;
        if model.inputs.len() != 1 || model.outputs.len() != 2 {
            return Err(Error::BadModel(format!(
                "expected 1 input and 2 outputs, the file has {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let typed = model
            .with_input_fact(0, input_fact)
            .and_then(|m| m.into_optimized())
            .map_err(Error::tract)?;
        for (i, want) in [[batch, 1], [batch, FAMILY_COUNT]].iter().enumerate() {
            let fact = typed.output_fact(i).map_err(Error::tract)?;
            let shape = fact.shape.as_concrete().map(|s| s.to_vec());
            if fact.datum_type != f32::datum_type() || shape.as_deref() != Some(&want[..]) {
                return Err(Error::BadModel(format!(
                    "output {i} is {:?} {:?}, expected f32 {want:?}",
                    fact.datum_type, fact.shape
                )));
            }
        }
        let runnable = typed.into_runnable().map_err(Error::tract)?;
        Ok(Plan { runnable, batch })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs scaled windows in chunks of the plan's batch, padding the last chunk.
    pub fn run_scaled(&self, windows: &[crate::Window]) -> Result<Outputs> {
        let mut out = Outputs {
            scores: Vec::with_capacity(windows.len()),
            families: Vec::with_capacity(windows.len()),
        };
        for chunk in windows.chunks(self.batch) {
            self.run_chunk(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn run_chunk(&self, chunk: &[crate::Window], out: &mut Outputs) -> Result<()> {
        let mut data = Vec::with_capacity(self.batch * WINDOW_VALUES);
        data.extend(chunk.iter().flatten().flatten().copied());
        data.resize(self.batch * WINDOW_VALUES, 0.0);
        let input = Tensor::from_shape(&[self.batch, WINDOW, FEATURE_COUNT], &data).map_err(Error::tract)?;
        // `run` spawns a fresh state per call (see the module comment).
        let result = self.runnable.run(tvec!(input.into())).map_err(Error::tract)?;
        let scores = result[0]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(Error::tract)?;
        let families = result[1]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(Error::tract)?;
        out.scores.extend_from_slice(&scores[..chunk.len()]);
        out.families.extend(
            families
                .chunks_exact(FAMILY_COUNT)
                .take(chunk.len())
                .map(<[f32]>::to_vec),
        );
        Ok(())
    }
}

/// Benign or attack, by the score threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Benign,
    Attack,
}

/// The verdict on one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Attack probability.
    pub score: f32,
    pub label: Label,
    /// `|score − 0.5|·2`: 0 undecided, 1 certain.
    pub confidence: f32,
    /// The most probable family.
    pub family: Family,
    /// Probabilities in [`FAMILIES`](crate::FAMILIES) order.
    pub family_probs: Vec<f32>,
}

impl Prediction {
    fn new(score: f32, family_probs: Vec<f32>, threshold: f32) -> Prediction {
        let attack = score >= threshold;
        Prediction {
            score,
            label: if attack { Label::Attack } else { Label::Benign },
            confidence: (score - 0.5).abs() * 2.0,
            family: Family::for_verdict(attack, &family_probs),
            family_probs,
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Batch of the batched plan.
    pub batch: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { batch: DEFAULT_BATCH }
    }
}

/// A model directory loaded for scoring: `model.onnx`, `scaler.json`, `metadata.json`.
#[derive(Debug, Clone)]
pub struct Model {
    single: Plan,
    batched: Plan,
    scaler: Scaler,
    metadata: Metadata,
}

impl Model {
    /// Loads a model directory with the default options.
    pub fn load(dir: &Path) -> Result<Model> {
        Self::load_with(dir, LoadOptions::default())
    }

    pub fn load_with(dir: &Path, options: LoadOptions) -> Result<Model> {
        let metadata = Metadata::load(&dir.join(store::METADATA_FILE))?;
        let scaler = Scaler::load(&dir.join(store::SCALER_FILE))?;
        let path = dir.join(store::ONNX_FILE);
        let onnx = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_parts(&onnx, scaler, metadata, options)
    }

    /// Builds a model from ONNX bytes and its companions (e.g. received over the network).
    pub fn from_parts(onnx: &[u8], scaler: Scaler, metadata: Metadata, options: LoadOptions) -> Result<Model> {
        metadata.validate()?;
        scaler.validate()?;
        Ok(Model {
            single: Plan::load(onnx, 1)?,
            batched: Plan::load(onnx, options.batch.max(1))?,
            scaler,
            metadata,
        })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn scaler(&self) -> &Scaler {
        &self.scaler
    }

    /// Scores windows of raw features (the scaler is applied here).
    pub fn score(&self, windows: &[crate::Window]) -> Result<Vec<Prediction>> {
        self.score_padded(windows, &[])
    }

    /// Scores windows of raw features of which some are partial: `padded[i]` oldest rows of
    /// window `i` are padding (see [`crate::PAD_VALUE`]); missing entries mean none.
    pub fn score_padded(&self, windows: &[crate::Window], padded: &[usize]) -> Result<Vec<Prediction>> {
        let scaled: Vec<crate::Window> = windows
            .iter()
            .enumerate()
            .map(|(i, w)| self.scaler.scale_window_padded(w, padded.get(i).copied().unwrap_or(0)))
            .collect();
        let out = self.score_scaled(&scaled)?;
        Ok(out
            .scores
            .into_iter()
            .zip(out.families)
            .map(|(s, f)| Prediction::new(s, f, self.metadata.threshold))
            .collect())
    }

    /// Scores raw features given flat, `n × 10 × 78` values, oldest flow first.
    pub fn score_flat(&self, values: &[f32]) -> Result<Vec<Prediction>> {
        if values.is_empty() || values.len() % WINDOW_VALUES != 0 {
            return Err(Error::Shape(format!(
                "{} values is not a whole number of windows of {WINDOW} flows x {FEATURE_COUNT} features",
                values.len()
            )));
        }
        let windows: Vec<crate::Window> = values
            .chunks_exact(WINDOW_VALUES)
            .map(|w| std::array::from_fn(|t| std::array::from_fn(|j| w[t * FEATURE_COUNT + j])))
            .collect();
        self.score(&windows)
    }

    /// Verdicts at this model's threshold for raw outputs of [`Model::score_scaled`].
    pub fn verdicts(&self, out: Outputs) -> Vec<Prediction> {
        out.scores
            .into_iter()
            .zip(out.families)
            .map(|(s, f)| Prediction::new(s, f, self.metadata.threshold))
            .collect()
    }

    /// Raw outputs for already scaled windows.
    pub fn score_scaled(&self, windows: &[crate::Window]) -> Result<Outputs> {
        let n = self.batched.batch();
        let full = windows.len() / n * n;
        let mut out = self.batched.run_scaled(&windows[..full])?;
        let rest = &windows[full..];
        // One padded batch costs about as much as 3/4 of a batch run one by one.
        let tail = if rest.len() * 4 >= n * 3 {
            self.batched.run_scaled(rest)?
        } else {
            self.single.run_scaled(rest)?
        };
        out.scores.extend(tail.scores);
        out.families.extend(tail.families);
        Ok(out)
    }
}
