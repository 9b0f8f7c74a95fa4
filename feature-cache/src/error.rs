//! Errors of the feature cache: each names the file, and where it applies the row or field.

use std::path::PathBuf;

/// Result with a [`CacheError`].
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// What went wrong reading or writing a cache, manifest or label table.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An operating-system error on a named file.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error (in the message, not a `source()`, so it prints once).
        cause: std::io::Error,
    },
    /// A Parquet or Arrow error on a named file.
    #[error("{path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet/Arrow layer said.
        message: String,
    },
    /// A required column is absent or has the wrong type.
    #[error("{path}: column `{column}`: {message}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong with it.
        message: String,
    },
    /// A row cannot be read.
    #[error("{path}: row {row}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based data row (header excluded).
        row: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The same id appears twice.
    #[error("{path}: duplicate id `{id}` (rows {first} and {second})")]
    DuplicateId {
        /// The file (or directory for a multi-part cache).
        path: PathBuf,
        /// The id.
        id: String,
        /// 1-based row (or global row index) of the first occurrence.
        first: usize,
        /// 1-based row of the second occurrence.
        second: usize,
    },
    /// The wiki-image-topics metadata of a Parquet file is missing or invalid.
    #[error("{path}: metadata `{key}`: {message}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A model name or manifest that cannot be used.
    #[error("model {model}: {message}")]
    Model {
        /// The name or path given.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// Parts of one cache that disagree (different models, dims, pooling …).
    #[error(transparent)]
    MixedCache(Box<MixedCache>),
    /// A request that does not fit the data (wrong embedding length, unknown column …).
    #[error("{0}")]
    Invalid(String),
}

/// Two parts of one cache whose embeddings are not interchangeable.
#[derive(Debug, thiserror::Error)]
#[error("{dir}: parts disagree: {first} has {first_value}, {second} has {second_value} ({field}); a cache must hold one model's embeddings")]
pub struct MixedCache {
    /// The cache directory.
    pub dir: PathBuf,
    /// The field that differs.
    pub field: String,
    /// One part.
    pub first: PathBuf,
    /// Its value.
    pub first_value: String,
    /// Another part.
    pub second: PathBuf,
    /// Its value.
    pub second_value: String,
}

impl CacheError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause: source }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Self::Parquet { path: path.into(), message: err.to_string() }
    }

    pub(crate) fn column(path: impl Into<PathBuf>, column: &str, message: impl Into<String>) -> Self {
        Self::Column { path: path.into(), column: column.to_string(), message: message.into() }
    }

    pub(crate) fn row(path: impl Into<PathBuf>, row: usize, message: impl Into<String>) -> Self {
        Self::Row { path: path.into(), row, message: message.into() }
    }
}
