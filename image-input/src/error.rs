//! Errors that stop reading an input (per-image problems are [`crate::ImageFailure`]s instead).

use std::path::PathBuf;

/// Result with an [`InputError`].
pub type Result<T, E = InputError> = std::result::Result<T, E>;

/// What makes an input unreadable as a whole: each names the file and, where it applies, the
/// column, row or member.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// An operating-system error on a named path.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error (in the message, not a `source()`, so it prints once).
        cause: std::io::Error,
    },
    /// A Parquet shard that cannot be read.
    #[error("{path}: {message}")]
    Parquet {
        /// The shard.
        path: PathBuf,
        /// What the Parquet/Arrow layer said, with the row group or rows concerned.
        message: String,
    },
    /// A column that is missing or of a type the input kind cannot use.
    #[error("{path}: column `{column}`: {message}")]
    Column {
        /// The shard.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tar shard that cannot be read.
    #[error("{path}: {message}")]
    Tar {
        /// The shard.
        path: PathBuf,
        /// What is wrong, with the member or offset concerned.
        message: String,
    },
    /// An input argument that names nothing usable.
    #[error("{0}")]
    Usage(String),
    /// The feature cache layer (manifest tables).
    #[error(transparent)]
    Cache(#[from] feature_cache::CacheError),
}

impl InputError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Parquet { path: path.into(), message: message.to_string() }
    }

    pub(crate) fn column(path: impl Into<PathBuf>, column: &str, message: impl Into<String>) -> Self {
        Self::Column { path: path.into(), column: column.to_string(), message: message.into() }
    }

    pub(crate) fn tar(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Tar { path: path.into(), message: message.into() }
    }
}
