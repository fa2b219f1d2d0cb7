//! The detection model the hub scores with: the bundled one (`model_dir`) or one an admin
//! uploaded (kept under `data_dir/models/<version>/`). An upload is checked by loading it in
//! tract and scoring a window before it is stored; the active model is swapped atomically, so
//! requests in flight finish on the model they started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use gatewatch_models::score::{LoadOptions, Model};
use gatewatch_models::store::{Metadata, METADATA_FILE, ONNX_FILE, SCALER_FILE};
use gatewatch_models::{Scaler, Window, FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// `active_model` value that names the bundled model.
pub const BUNDLED: &str = crate::api::settings::DEFAULT_MODEL;

/// Windows per tract run in the hub (requests score one window; explanations batch 79).
const BATCH: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The upload is not a usable model; `field` names the part at fault.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("a model with version {0:?} exists already; give the upload another version")]
    Exists(String),
    #[error("no model called {0:?} was uploaded")]
    Unknown(String),
    #[error("no detection model is loaded: upload one (POST /api/v1/settings/model/upload) or set model_dir")]
    NoneLoaded,
    #[error("model store at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Model(#[from] gatewatch_models::Error),
}

/// The three files of a model as uploaded.
#[derive(Debug)]
pub struct ModelFiles<'a> {
    pub onnx: &'a [u8],
    pub scaler: &'a [u8],
    pub metadata: &'a [u8],
}

#[derive(Debug)]
pub struct ModelStore {
    bundled: PathBuf,
    uploads: PathBuf,
    /// Name the active model goes by in `active_model` (version, or [`BUNDLED`]), the model,
    /// and the directory it was loaded from.
    active: RwLock<Option<(String, Arc<Model>, PathBuf)>>,
    /// The active model's version, for those who roll it out to agents.
    version: tokio::sync::watch::Sender<Option<String>>,
}

impl ModelStore {
    /// Opens the store and loads the bundled model; without one, `/predict` answers 503
    /// until a model is uploaded.
    pub fn open(bundled: &Path, data_dir: &Path) -> ModelStore {
        let store = ModelStore {
            bundled: bundled.to_path_buf(),
            uploads: data_dir.join("models"),
            active: RwLock::new(None),
            version: tokio::sync::watch::Sender::new(None),
        };
        match store.activate(BUNDLED) {
            Ok(m) => {
                tracing::info!(dir = %bundled.display(), version = %m.metadata().model_version, "bundled model loaded")
            }
            Err(e) => {
                tracing::warn!(dir = %bundled.display(), error = %e, "no bundled model; /predict answers 503 until one is uploaded")
            }
        }
        store
    }

    /// At start: activates the model `active_model` names, if it is an uploaded one; a model
    /// that no longer loads is logged and the bundled one stays active.
    pub fn restore(&self, active_model: Option<&str>) {
        let Some(name) = active_model.filter(|n| *n != BUNDLED) else {
            return;
        };
        match self.activate(name) {
            Ok(m) => tracing::info!(version = %m.metadata().model_version, "uploaded model active"),
            Err(e) => {
                tracing::error!(model = %name, error = %e, "the active model does not load; scoring with the bundled model")
            }
        }
    }

    /// The model requests are scored with now.
    pub fn active(&self) -> Result<Arc<Model>, ModelError> {
        self.read().map(|(_, m, _)| m).ok_or(ModelError::NoneLoaded)
    }

    /// Follows the active model's version.
    pub fn watch_version(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.version.subscribe()
    }

    /// The active model's version and its directory (what agents download).
    pub fn active_files(&self) -> Option<(String, PathBuf)> {
        self.read().map(|(_, m, dir)| (m.metadata().model_version.clone(), dir))
    }

    /// Name of the active model as `active_model` holds it.
    pub fn active_name(&self) -> Option<String> {
        self.read().map(|(n, _, _)| n)
    }

    fn read(&self) -> Option<(String, Arc<Model>, PathBuf)> {
        match self.active.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads a stored model (or the bundled one) and makes it the active one.
    pub fn activate(&self, name: &str) -> Result<Arc<Model>, ModelError> {
        let dir = if name == BUNDLED {
            self.bundled.clone()
        } else {
            check_version(name).map_err(|_| ModelError::Unknown(name.into()))?;
            let dir = self.uploads.join(name);
            if !dir.is_dir() {
                return Err(ModelError::Unknown(name.into()));
            }
            dir
        };
        let model = Arc::new(Model::load_with(&dir, LoadOptions { batch: BATCH })?);
        let mut guard = match self.active.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Some((name.to_string(), model.clone(), dir));
        drop(guard);
        self.version.send_replace(Some(model.metadata().model_version.clone()));
        Ok(model)
    }

    /// Checks an upload and stores it under its version (from the metadata, or `version`
    /// if given). Does not activate it.
    pub fn install(&self, files: &ModelFiles<'_>, version: Option<&str>) -> Result<Metadata, ModelError> {
        let invalid = |field, reason: String| ModelError::Invalid { field, reason };
        let mut metadata: Metadata =
            serde_json::from_slice(files.metadata).map_err(|e| invalid("metadata", e.to_string()))?;
        if let Some(v) = version {
            metadata.model_version = v.to_string();
        }
        check_version(&metadata.model_version).map_err(|reason| invalid("version", reason))?;
        metadata.validate().map_err(|e| invalid("metadata", e.to_string()))?;
        let scaler: Scaler = serde_json::from_slice(files.scaler).map_err(|e| invalid("scaler", e.to_string()))?;
        scaler.validate().map_err(|e| invalid("scaler", e.to_string()))?;
        let model = Model::from_parts(
            files.onnx,
            scaler.clone(),
            metadata.clone(),
            LoadOptions { batch: BATCH },
        )
        .map_err(|e| invalid("model", e.to_string()))?;
        smoke_test(&model).map_err(|reason| invalid("model", reason))?;

        let dir = self.uploads.join(&metadata.model_version);
        if dir.exists() {
            return Err(ModelError::Exists(metadata.model_version));
        }
        // Write beside, then rename: a crash leaves no half-written model under its name.
        let staging = self.uploads.join(format!(".staging-{}", uuid::Uuid::new_v4()));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let written = (|| {
            std::fs::write(staging.join(ONNX_FILE), files.onnx).map_err(io(&staging))?;
            scaler.save(&staging.join(SCALER_FILE))?;
            metadata.save(&staging.join(METADATA_FILE))?;
            std::fs::rename(&staging, &dir).map_err(io(&dir))
        })();
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        written?;
        Ok(metadata)
    }
}

/// A model the hub holds: the bundled one or one stored under its version.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StoredModel {
    /// What `active_model` takes to activate it (the version, or `cnn_lstm_default`).
    pub name: String,
    pub version: String,
    /// `bundled`, `uploaded` or `federated` (made by a federated-learning round).
    pub origin: &'static str,
    /// When it was stored (unknown for the bundled model).
    pub stored_at: Option<chrono::DateTime<chrono::Utc>>,
    pub active: bool,
}

impl ModelStore {
    /// Every model the hub holds, the bundled one first, then the newest stored first.
    pub fn list(&self) -> Vec<StoredModel> {
        let active = self.active_name();
        let mut out = Vec::new();
        if let Ok(m) = Metadata::load(&self.bundled.join(METADATA_FILE)) {
            out.push(StoredModel {
                name: BUNDLED.into(),
                version: m.model_version,
                origin: "bundled",
                stored_at: None,
                active: active.as_deref() == Some(BUNDLED),
            });
        }
        let mut stored: Vec<StoredModel> = std::fs::read_dir(&self.uploads)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                check_version(&name).ok()?;
                let meta = Metadata::load(&entry.path().join(METADATA_FILE)).ok()?;
                let stored_at = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .map(chrono::DateTime::from);
                Some(StoredModel {
                    active: active.as_deref() == Some(name.as_str()),
                    // Federated rounds store their models as `fl-<run>-r<round>`.
                    origin: if name.starts_with("fl-") {
                        "federated"
                    } else {
                        "uploaded"
                    },
                    name,
                    version: meta.model_version,
                    stored_at,
                })
            })
            .collect();
        stored.sort_by(|a, b| b.stored_at.cmp(&a.stored_at).then_with(|| a.name.cmp(&b.name)));
        out.extend(stored);
        out
    }
}

impl ModelStore {
    /// The directory of model `version` (by its metadata version): the active one, an
    /// uploaded or federated one, or the bundled one.
    pub fn dir_of(&self, version: &str) -> Option<PathBuf> {
        if let Some((active, dir)) = self.active_files() {
            if active == version {
                return Some(dir);
            }
        }
        if check_version(version).is_ok() {
            let dir = self.uploads.join(version);
            if dir.join(METADATA_FILE).is_file() {
                return Some(dir);
            }
        }
        Metadata::load(&self.bundled.join(METADATA_FILE))
            .ok()
            .filter(|m| m.model_version == version)
            .map(|_| self.bundled.clone())
    }

    /// Stores a model made by federated learning (parameters, the starting model's scaler,
    /// metadata naming `version`), exported to ONNX and checked like an upload. Not activated.
    pub fn install_trained(
        &self,
        version: &str,
        flat: &[f32],
        scaler: &Scaler,
        metadata: &Metadata,
    ) -> Result<PathBuf, ModelError> {
        let invalid = |field, reason: String| ModelError::Invalid { field, reason };
        check_version(version).map_err(|reason| invalid("version", reason))?;
        let mut metadata = metadata.clone();
        metadata.model_version = version.to_string();
        let dir = self.uploads.join(version);
        if dir.exists() {
            return Err(ModelError::Exists(version.into()));
        }
        let staging = self.uploads.join(format!(".staging-{}", uuid::Uuid::new_v4()));
        let written = (|| {
            gatewatch_models::store::save_model_dir(&staging, flat, scaler, &metadata)?;
            let model = Model::load_with(&staging, LoadOptions { batch: BATCH })?;
            smoke_test(&model).map_err(|reason| invalid("model", reason))?;
            std::fs::rename(&staging, &dir).map_err(|source| ModelError::Io {
                path: dir.clone(),
                source,
            })
        })();
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        written?;
        Ok(dir)
    }
}

/// Versions name directories: letters, digits, `.`, `_`, `-`; 1–100 characters.
fn check_version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && !v.starts_with('.')
        && v != BUNDLED
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a usable version: use 1-100 letters, digits, '.', '_' or '-' (not starting with '.', not {BUNDLED:?})"
        ))
    }
}

/// Scores the mean window and a window of extremes: outputs must have the right shape and be
/// probabilities. Catches graphs that load but compute something else.
fn smoke_test(model: &Model) -> Result<(), String> {
    let mean: Window = [[0.0; FEATURE_COUNT]; WINDOW];
    let scaled = model.scaler().scale_window(&mean);
    let extreme: Window = [[1e9; FEATURE_COUNT]; WINDOW];
    let out = model
        .score_scaled(&[scaled, model.scaler().scale_window(&extreme)])
        .map_err(|e| format!("does not run on a 10x78 window: {e}"))?;
    if out.scores.len() != 2 || out.families.iter().any(|f| f.len() != FAMILY_COUNT) {
        return Err(format!(
            "expected a score and {FAMILY_COUNT} family probabilities per window, got {} scores and {:?}",
            out.scores.len(),
            out.families.iter().map(Vec::len).collect::<Vec<_>>()
        ));
    }
    let probability = |p: f32| p.is_finite() && (0.0..=1.0).contains(&p);
    if !out.scores.iter().copied().all(probability) {
        return Err(format!("scores are not probabilities: {:?}", out.scores));
    }
    for f in &out.families {
        let sum: f32 = f.iter().sum();
        if !f.iter().copied().all(probability) || (sum - 1.0).abs() > 1e-3 {
            return Err(format!("family outputs are not a softmax: {f:?}"));
        }
    }
    Ok(())
}
