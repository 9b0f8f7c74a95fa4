//! Phase 2 of wiki-image-topics: fit, evaluate and report topic heads on cached embeddings,
//! in pure Rust (no ONNX Runtime).
//!
//! Data flow: [`feature_cache::EmbeddingCache`] -> [`data::Features`] joined with a
//! [`feature_cache::LabelTable`] and a split ([`data::Joined`]) -> a [`labels::LabelSpace`] per
//! label configuration -> [`train::train_fused`] (one [`model::HeadStack`], one wide GEMM for
//! all heads) or [`linear::train_linear`] (the linear-probe baseline) -> [`evaluate`] with
//! [`metrics`] -> [`report`] (run directory with plots).
//! [`run`] wires this for the `train` and `predict` commands, [`sweep`] for many configurations.

pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod labels;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod report;
pub mod rng;
pub mod run;
pub mod step;
pub mod sweep;
pub mod train;

pub use error::{Result, TrainError};
