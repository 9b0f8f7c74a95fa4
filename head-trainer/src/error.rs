//! Errors of the head-trainer library.

/// Result with a [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// What stops a training, evaluation or sweep.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The feature cache layer (embeddings, labels, splits).
    #[error(transparent)]
    Cache(#[from] feature_cache::CacheError),
    /// A label configuration that cannot be built.
    #[error("labels: {0}")]
    Labels(String),
    /// A configuration or sweep file error, naming the file, key and line where known.
    #[error("{0}")]
    Config(String),
    /// Data that cannot be trained on (e.g. an empty training split).
    #[error("{0}")]
    Data(String),
    /// An operating-system error on a named path.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The underlying error (in the message, not a `source()`, so it prints once).
        cause: std::io::Error,
    },
    /// A head that does not fit the embeddings given to it.
    #[error("{0}")]
    Mismatch(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause: source }
    }
}
