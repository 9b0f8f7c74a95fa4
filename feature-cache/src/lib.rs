//! The on-disk contract between the two phases of wiki-image-topics.
//!
//! * [`embeddings`]: the embedding cache — Parquet parts with `id`, `embedding`
//!   (FixedSizeList of Float16/Float32), `width`, `height`, and the model's identity in the
//!   file metadata ([`CacheMetadata`]); a directory of parts is read as one [`EmbeddingCache`].
//! * [`failures`]: the table of images the extractor could not embed, with their reasons.
//! * [`manifest`]: which images to embed — a directory tree or a CSV/Parquet/JSONL list.
//! * [`labels`]: label tables — `id` plus list-of-string label columns (one per taxonomy).
//! * [`split`]: deterministic train/val/test assignment by a hash of `id`.
//!
//! This crate never links ONNX Runtime: the head-trainer depends on it alone.

pub mod atomic;
pub mod embeddings;
pub mod error;
pub mod failures;
pub mod labels;
pub mod manifest;
pub mod split;
mod table;

pub use embeddings::{
    check_unique_ids, widen_f16, CacheMetadata, EmbeddingCache, EmbeddingDtype, EmbeddingMatrix,
    EmbeddingValues, EmbeddingWriter, Pooling, RowGroupRef,
};
pub use error::{CacheError, Result};
pub use failures::{Failure, FailureWriter};
pub use labels::LabelTable;
pub use manifest::{ImageEntry, ImageManifest, RejectedEntry};
pub use split::{Split, SplitSpec};
