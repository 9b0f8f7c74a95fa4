//! The on-disk contract between the two phases of wiki-image-topics.
//!
//! * [`embeddings`]: the embedding cache — Parquet parts with `id`, `embedding`
//!   (FixedSizeList of Float16/Float32), `width`, `height` and the image's [`origin`], the
//!   model's identity in the file metadata ([`CacheMetadata`]); a directory of parts is read as
//!   one [`EmbeddingCache`].
//! * [`failures`]: the table of images the extractor could not embed, with their reasons.
//! * [`manifest`]: which images to embed, as a table of ids and paths.
//! * [`model_manifest`]: what a backbone's ONNX file takes and gives, and how `--model` finds it.
//! * [`labels`]: label tables — `id` plus list-of-string label columns (one per taxonomy).
//! * [`split`]: deterministic train/val/test assignment by a hash of `id`.
//! * [`shard`]: one job over many processes (`--shard I/N`, Slurm arrays), one rule for both
//!   phases.
//! * [`atomic`]: files and directories that appear complete or not at all.
//! * [`progress`]: the trait long work reports through.
//!
//! This crate never links ONNX Runtime: the head-trainer depends on it alone.

pub mod atomic;
pub mod embeddings;
pub mod error;
pub mod failures;
pub mod labels;
pub mod manifest;
pub mod model_manifest;
pub mod origin;
pub mod progress;
pub mod shard;
pub mod split;
mod table;

/// Reading Arrow string columns whatever their representation (ids of Parquet inputs).
pub mod arrow_text {
    pub use crate::table::{string_type, strings};
}

pub use embeddings::{
    check_unique_ids, round_to_storage, widen_f16, CacheMetadata, EmbeddingCache, EmbeddingDtype,
    EmbeddingMatrix, EmbeddingValues, EmbeddingWriter, Pooling, RowGroupRef,
};
pub use error::{CacheError, Result};
pub use failures::{Failure, FailureWriter};
pub use labels::LabelTable;
pub use origin::Origin;
pub use progress::{Progress, Silent};
pub use shard::Shard;
pub use split::{Split, SplitSpec};
