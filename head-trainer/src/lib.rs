//! Phase 2 of wiki-image-topics: fit, evaluate and report topic heads on cached embeddings,
//! in pure Rust (no ONNX Runtime).
//!
//! Data flow: [`feature_cache::EmbeddingCache`] -> [`data::Features`] joined with a
//! [`feature_cache::LabelTable`] and a split ([`data::Joined`]) -> a [`labels::LabelSpace`] per
//! label configuration ([`config`]) -> [`train::train_fused`] (a [`model::HeadStack`] trained by
//! [`step::TrainStep`], each head on its own rows) or [`linear::train_linear`] (the
//! linear-probe baseline) -> [`evaluate`] with [`metrics`] -> a run directory ([`run_dir`]):
//! the head ([`head_io`]), test [`predictions`], [`report`], [`run_plots`] (drawn by
//! [`plot`]) and the error [`gallery`]. [`run`] wires this for the `train` and `predict` commands, [`sweep`] for many
//! configurations, summarised by [`summary`]; [`export`] writes a head (with its backbone)
//! as one ONNX model. Long work reports through
//! [`feature_cache::Progress`].

pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod gallery;
pub mod head_io;
pub mod labels;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod predictions;
pub mod report;
pub mod rng;
pub mod run;
pub mod run_dir;
pub mod run_plots;
pub mod step;
pub mod summary;
pub mod sweep;
pub mod train;

pub use error::{Result, TrainError};
