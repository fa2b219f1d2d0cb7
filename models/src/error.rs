//! The crate's error type.

use std::path::PathBuf;

/// Errors of the model crate. Tract reports `anyhow` errors; they are kept as text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("tract: {0}")]
    Tract(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A model directory or parameter file that is not what this build expects.
    #[error("bad model: {0}")]
    BadModel(String),
    /// Loading a model made tract panic; the file is treated as malformed.
    #[error("model file made the ONNX loader panic: {0}")]
    LoaderPanic(String),
    /// Input of the wrong size or shape.
    #[error("bad input shape: {0}")]
    Shape(String),
    /// Training or evaluation data that cannot be used.
    #[error("bad data: {0}")]
    Data(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn tract(e: impl std::fmt::Display) -> Self {
        Error::Tract(format!("{e:#}"))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
