//! The run directory of a trained head, built under a temporary name and renamed when complete:
//! a directory with a run's name is always a finished run, and a crash leaves at most a hidden
//! temporary that the next attempt at that run removes.
//!
//! | file | content |
//! |---|---|
//! | `metrics.json` | the evaluation ([`RunMetrics`]): a function of configuration, seed and thread count only |
//! | `training.json` | how the training went ([`TrainingRecord`]: seconds, heads fused with, threads) |
//! | `head.json`, `head.safetensors` | the head ([`crate::head_io`]) |
//! | `predictions.parquet` | test-split probabilities and targets ([`crate::predictions`]) |
//! | `report.md`, `*.png`, `*.svg` | the report and its plots |

use std::path::Path;

use feature_cache::atomic::{remove_stale_temps, write_atomic, AtomicDir, DirCommit};
use feature_cache::{CacheMetadata, Progress};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::data::JoinStats;
use crate::error::{Result, TrainError};
use crate::evaluate::{Evaluation, Thresholds};
use crate::gallery::{write_gallery, GalleryData, GalleryOptions};
use crate::head_io::{save_head, HeadInfo, RunInputs, HEAD_INFO, HEAD_WEIGHTS};
use crate::predictions::PredictionWriter;
use crate::train::{EpochLog, TrainedHead};

/// The evaluation of a run.
pub const METRICS: &str = "metrics.json";
/// How the training went.
pub const TRAINING: &str = "training.json";
/// Test-split predictions.
pub const PREDICTIONS: &str = "predictions.parquet";
/// The report.
pub const REPORT: &str = "report.md";

/// `metrics.json`: everything measured, nothing that depends on the machine's speed or on the
/// other runs trained beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Run name.
    pub run: String,
    /// `model@sha256-prefix` of the embeddings.
    pub embedding_model: String,
    /// The join of the cache and the label table.
    pub join: JoinStats,
    /// Training rows the head used.
    pub train_rows: usize,
    /// Joined images left out for having none of the chosen labels (`empty = drop`).
    #[serde(default)]
    pub dropped: usize,
    /// Best epoch (0 for the linear probe).
    pub best_epoch: usize,
    /// Per-epoch log.
    pub history: Vec<EpochLog>,
    /// Thresholds tuned on validation.
    pub thresholds: Thresholds,
    /// Test evaluation.
    pub test: Evaluation,
}

/// `training.json`: how a run was trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// Wall-clock seconds of its training (shared by the runs fused with it).
    pub train_seconds: f64,
    /// The runs trained in the same stack (itself included).
    pub fused_with: Vec<String>,
    /// Threads of the pool.
    pub threads: usize,
    /// `head-trainer <version>`.
    pub tool_version: String,
}

/// Everything a run directory is made of.
pub struct RunArtifacts<'a> {
    /// The trained, evaluated head.
    pub trained: &'a TrainedHead,
    /// Its configuration.
    pub config: &'a RunConfig,
    /// The embeddings' identity.
    pub embedding: &'a CacheMetadata,
    /// The join.
    pub join: &'a JoinStats,
    /// The inputs, as given.
    pub inputs: &'a RunInputs,
    /// How it was trained.
    pub record: &'a TrainingRecord,
    /// Its error gallery (`report.html`), if one is wanted.
    pub gallery: Option<&'a GalleryOptions>,
}

impl RunArtifacts<'_> {
    /// `head.json`.
    pub fn head_info(&self) -> HeadInfo {
        let t = self.trained;
        HeadInfo {
            name: t.name.clone(),
            labels: t.labels.clone(),
            thresholds: t.thresholds.clone(),
            config: self.config.clone(),
            embedding: self.embedding.clone(),
            model: t.head.kind(),
            shape: t.head.shape(),
            best_epoch: t.best_epoch,
            inputs: Some(self.inputs.clone()),
            tool_version: format!("head-trainer {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// `metrics.json`.
    pub fn metrics(&self) -> RunMetrics {
        let t = self.trained;
        RunMetrics {
            run: t.name.clone(),
            embedding_model: self.embedding.model_identity(),
            join: self.join.clone(),
            train_rows: t.train_rows,
            dropped: t.dropped,
            best_epoch: t.best_epoch,
            history: t.history.clone(),
            thresholds: t.thresholds.clone(),
            test: t.test.clone(),
        }
    }
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Data(e.to_string()))?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Writes every artefact of a run into a temporary directory beside `dir` and publishes it at
/// `dir` in one rename. A `dir` that already exists is left alone (`AlreadyThere`).
pub fn write_run(dir: &Path, art: &RunArtifacts<'_>, progress: &dyn Progress) -> Result<DirCommit> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    let tmp = AtomicDir::create(dir)?;
    let at = tmp.path();
    let t = art.trained;
    save_head(&t.head, &at.join(HEAD_WEIGHTS))?;
    let info = art.head_info();
    write_json(&at.join(HEAD_INFO), &info)?;
    let mut predictions = PredictionWriter::create(&at.join(PREDICTIONS), &info, true)?;
    predictions.write(&t.test_ids, &t.test_probs, Some(&t.test_targets))?;
    predictions.finish()?;
    crate::run_plots::write_run_plots(at, t)?;
    let report = crate::report::report_markdown(t, art.config, art.embedding, art.join, art.record);
    write_atomic(at.join(REPORT), report.as_bytes())?;
    write_json(&at.join(TRAINING), art.record)?;
    if let Some(options) = art.gallery.filter(|g| g.per_label > 0) {
        let data = GalleryData {
            run: &t.name,
            embedding_model: art.embedding.model_identity(),
            labels: &t.labels,
            thresholds: &t.thresholds.f1,
            ids: &t.test_ids,
            probs: &t.test_probs,
            targets: &t.test_targets,
            metrics: &t.test.labels,
        };
        write_gallery(at, &data, options, progress)?;
    }
    write_json(&at.join(METRICS), &art.metrics())?;
    Ok(tmp.commit()?)
}

/// What a run directory holds.
#[derive(Debug)]
pub enum RunState {
    /// No such directory.
    Missing,
    /// A finished run.
    Finished(Box<HeadInfo>),
}

/// The state of the run directory `dir`; an error for a directory that is not a finished run
/// (left by a head-trainer older than atomic run directories, or by hand).
pub fn run_state(dir: &Path) -> Result<RunState> {
    if !dir.exists() {
        return Ok(RunState::Missing);
    }
    let missing: Vec<&str> = [HEAD_INFO, HEAD_WEIGHTS, METRICS, PREDICTIONS]
        .into_iter()
        .filter(|f| !dir.join(f).exists())
        .collect();
    if !missing.is_empty() {
        return Err(TrainError::Config(format!(
            "{} is not a finished run (no {}): an older head-trainer was interrupted there? remove it to train it again",
            dir.display(),
            missing.join(", ")
        )));
    }
    Ok(RunState::Finished(Box::new(HeadInfo::load(dir)?)))
}

/// Removes temporaries of earlier, killed attempts at the run `name` in `out`.
pub fn remove_stale_attempts(out: &Path, name: &str) -> Result<usize> {
    Ok(remove_stale_temps(out, &|target| target == name)?)
}
