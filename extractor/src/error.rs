//! Errors of the extractor library.

use std::path::PathBuf;

/// Result with an [`ExtractError`].
pub type Result<T, E = ExtractError> = std::result::Result<T, E>;

/// Errors that stop an extraction job (per-image problems are [`image_input::ImageFailure`]s,
/// recorded in the failures table instead).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// ONNX Runtime's shared library could not be found or loaded.
    #[error("{0}")]
    Runtime(String),
    /// An error from ONNX Runtime.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// The feature cache layer.
    #[error(transparent)]
    Cache(#[from] feature_cache::CacheError),
    /// The input (a shard that cannot be read, a column of the wrong type …).
    #[error(transparent)]
    Input(#[from] image_input::InputError),
    /// An operating-system error on a named path.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error (in the message, not a `source()`, so it prints once).
        cause: std::io::Error,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

impl<T> From<ort::Error<T>> for ExtractError {
    fn from(e: ort::Error<T>) -> Self {
        ExtractError::Ort(e.to_string())
    }
}
