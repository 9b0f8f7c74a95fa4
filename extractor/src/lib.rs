//! Phase 1 of wiki-image-topics: embed every image once with a frozen ImageNet EfficientNet
//! (ONNX Runtime, CUDA or CPU) and write the embeddings to a Parquet feature cache.
//!
//! Data flow: [`feature_cache::ImageManifest`] -> [`job`] (shard, resume) -> [`decode`] and
//! [`preprocess`] on a rayon pool, overlapped with [`embed::Embedder`] batches -> parts written
//! by [`feature_cache::EmbeddingWriter`] + a failures table. [`info`] summarises a cache.

pub mod decode;
pub mod embed;
pub mod error;
pub mod info;
pub mod job;
pub mod model;
pub mod preprocess;
pub mod runtime;

pub use error::{ExtractError, Result};
