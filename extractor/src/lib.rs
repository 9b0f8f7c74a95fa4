//! Phase 1 of wiki-image-topics: embed every image once with a frozen ImageNet EfficientNet
//! (ONNX Runtime, CUDA or CPU) and write the embeddings to a Parquet feature cache.
//!
//! Data flow: an input — directory, manifest, Parquet or tar shards — listed by
//! [`image_input::Catalog`] -> [`job`] (shard, resume) -> [`job::pipeline`]: bytes read and
//! decoded ([`image_input::decode`]) and [`preprocess`]ed on worker threads, in input order ->
//! [`embed::Embedder`] batches -> [`job::parts`]: atomic Parquet parts and failure tables.
//! [`info`] summarises a cache, [`migrate`] brings an older one to the current layout,
//! [`bench`] measures decoding alone.

pub mod bench;
pub mod embed;
pub mod error;
pub mod info;
pub mod job;
pub mod migrate;
pub use feature_cache::model_manifest as model;
pub mod preprocess;
pub mod runtime;

pub use error::{ExtractError, Result};
