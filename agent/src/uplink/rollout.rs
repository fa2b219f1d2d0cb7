//! Model rollout on the agent: when the hub says "use model V" the agent downloads V over
//! QUIC into `state_dir/models/V`, loads it, hands it to the pipeline (which swaps it in
//! between batches, keeping every window it has collected), and records V as current so a
//! restart keeps it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gatewatch_models::score::{LoadOptions, Model};

use super::bulk::{BulkClient, BulkError};

/// The file in the models directory naming the version in use.
const CURRENT: &str = "current";

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Download(#[from] BulkError),
    #[error("model {version} does not load: {reason}")]
    Load { version: String, reason: String },
    #[error("the pipeline has stopped")]
    PipelineGone,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Debug)]
pub struct Rollout {
    pub client: Arc<BulkClient>,
    /// `state_dir/models`.
    pub models_dir: PathBuf,
    pub load: LoadOptions,
    pub to_pipeline: std::sync::mpsc::Sender<crate::run::PipelineUpdate>,
}

impl Rollout {
    /// Downloads, loads and hands over `version`; returns it once the pipeline has it.
    pub async fn apply(&self, version: &str) -> Result<String, RolloutError> {
        let dir = self.client.fetch_model(version, &self.models_dir).await?;
        let load = self.load;
        let loaded = tokio::task::spawn_blocking(move || Model::load_with(&dir, load)).await;
        let model = match loaded {
            Ok(Ok(m)) => Arc::new(m),
            Ok(Err(e)) => {
                return Err(RolloutError::Load {
                    version: version.into(),
                    reason: e.to_string(),
                })
            }
            Err(e) => {
                return Err(RolloutError::Load {
                    version: version.into(),
                    reason: e.to_string(),
                })
            }
        };
        let got = model.metadata().model_version.clone();
        if got != version {
            return Err(RolloutError::Load {
                version: version.into(),
                reason: format!("its metadata says version {got}"),
            });
        }
        self.to_pipeline
            .send(crate::run::PipelineUpdate::Model(model))
            .map_err(|_| RolloutError::PipelineGone)?;
        let current = self.models_dir.join(CURRENT);
        tokio::fs::write(&current, version)
            .await
            .map_err(|source| RolloutError::Io { path: current, source })?;
        Ok(got)
    }
}

/// The model directory the hub last rolled out to this agent, if any.
pub fn current_model(models_dir: &Path) -> Option<PathBuf> {
    let version = std::fs::read_to_string(models_dir.join(CURRENT)).ok()?;
    let dir = models_dir.join(version.trim());
    dir.join(gatewatch_models::store::ONNX_FILE).is_file().then_some(dir)
}
