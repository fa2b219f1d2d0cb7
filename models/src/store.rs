//! The model directory: what a trained model is on disk and on the wire.
//!
//! | file | holds |
//! |---|---|
//! | `model.onnx` | the network for tract / onnxruntime |
//! | `scaler.json` | the [`Scaler`] |
//! | `metadata.json` | [`Metadata`]: version, architecture hash, families, threshold |
//! | `params.bin` | the flat parameters (see [`crate::params`]) for further training and FL |

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::params;
use crate::scaler::Scaler;
use crate::{FAMILIES, FEATURE_COUNT, WINDOW};

pub const ONNX_FILE: &str = "model.onnx";
pub const SCALER_FILE: &str = "scaler.json";
pub const METADATA_FILE: &str = "metadata.json";
pub const PARAMS_FILE: &str = "params.bin";

/// Version of the metadata format.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format: u32,
    /// Free text chosen by whoever trained or aggregated the model (e.g. `fl-round-12`).
    pub model_version: String,
    /// [`params::arch_hash`] of the network.
    pub arch_hash: String,
    pub window: usize,
    pub features: usize,
    /// Family names in output order.
    pub families: Vec<String>,
    /// Scores at or above this are attacks.
    pub threshold: f32,
}

impl Metadata {
    /// Metadata for a model of this build's architecture.
    pub fn new(model_version: &str) -> Metadata {
        Metadata {
            format: FORMAT,
            model_version: model_version.into(),
            arch_hash: params::arch_hash(),
            window: WINDOW,
            features: FEATURE_COUNT,
            families: FAMILIES.iter().map(|f| f.name().to_string()).collect(),
            threshold: 0.5,
        }
    }

    /// Refuses metadata of another format or architecture.
    pub fn validate(&self) -> Result<()> {
        let expected = Metadata::new(&self.model_version);
        let bad = |m: String| Err(Error::BadModel(format!("metadata: {m}")));
        if self.format != FORMAT {
            return bad(format!("format {}, this build reads {FORMAT}", self.format));
        }
        if self.arch_hash != expected.arch_hash {
            return bad(format!(
                "architecture {}, this build is {}",
                self.arch_hash, expected.arch_hash
            ));
        }
        if self.window != WINDOW || self.features != FEATURE_COUNT || self.families != expected.families {
            return bad("window, feature count or families differ from this build".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return bad(format!("threshold {} outside (0, 1)", self.threshold));
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Metadata> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let m: Metadata = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            path: path.into(),
            source: e,
        })?;
        m.validate()?;
        Ok(m)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Json {
            path: path.into(),
            source: e,
        })?;
        std::fs::write(path, json).map_err(|e| Error::io(path, e))
    }
}

/// Writes a complete model directory (created if missing).
pub fn save_model_dir(dir: &Path, flat: &[f32], scaler: &Scaler, metadata: &Metadata) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let onnx = crate::onnx::export(flat, &metadata.model_version)?;
    let path = dir.join(ONNX_FILE);
    std::fs::write(&path, onnx).map_err(|e| Error::io(&path, e))?;
    params::save(&dir.join(PARAMS_FILE), flat)?;
    scaler.save(&dir.join(SCALER_FILE))?;
    metadata.save(&dir.join(METADATA_FILE))
}

/// Reads what training needs from a model directory: flat parameters, scaler, metadata.
pub fn load_training_state(dir: &Path) -> Result<(Vec<f32>, Scaler, Metadata)> {
    let flat = params::load(&dir.join(PARAMS_FILE))?;
    let scaler = Scaler::load(&dir.join(SCALER_FILE))?;
    let metadata = Metadata::load(&dir.join(METADATA_FILE))?;
    Ok((flat, scaler, metadata))
}
