//! The `train` and `predict` commands as library functions.

use std::path::{Path, PathBuf};

use feature_cache::atomic::DirCommit;
use feature_cache::{check_unique_ids, EmbeddingCache, LabelTable, Progress, Split};

use crate::config::RunConfig;
use crate::data::{Features, JoinStats, Joined};
use crate::error::{Result, TrainError};
use crate::gallery::{write_gallery, GalleryData, GalleryOptions};
use crate::head_io::{RunInputs, TrainedRun};
use crate::labels::LabelSpace;
use crate::linear::train_linear;
use crate::model::ModelKind;
use crate::predictions::PredictionWriter;
use crate::run_dir::{remove_stale_attempts, write_run, RunArtifacts, TrainingRecord};
use crate::train::{train_fused, HeadJob, TrainedHead};

/// Embeddings and labels loaded once, shared by every run on them.
pub struct Inputs {
    /// The embeddings.
    pub features: Features,
    /// The label table.
    pub table: LabelTable,
    /// Where they were read from.
    pub paths: RunInputs,
}

impl Inputs {
    /// Loads a cache directory (whole, into memory) and a label table.
    pub fn load(embeddings: &Path, labels: &Path) -> Result<Self> {
        Self::open(embeddings, labels, None)
    }

    /// Opens a cache directory and loads a label table; a cache whose embeddings take more than
    /// `memory_limit` bytes is streamed from its row groups (see [`Features::open`]).
    pub fn open(embeddings: &Path, labels: &Path, memory_limit: Option<u64>) -> Result<Self> {
        let cache = EmbeddingCache::open(embeddings)?;
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        Ok(Self {
            features: Features::open(&cache, memory_limit)?,
            table: LabelTable::load(labels)?,
            paths: RunInputs { embeddings: absolute(embeddings), labels: absolute(labels) },
        })
    }
}

/// Says on the terminal what a user of the join should know: labelled ids without an embedding.
pub fn note_join(stats: &JoinStats, progress: &dyn Progress) {
    if stats.labels_without_embedding > 0 {
        progress.note(&format!(
            "{} of {} labelled ids have no embedding in the cache (e.g. {}): not extracted yet, or failed \
             (see `extractor info`); they are left out",
            stats.labels_without_embedding,
            stats.labelled,
            stats.missing_examples.join(", ")
        ));
    }
}

/// Says on the terminal which labels of a trained head have a split with a single class, whose
/// ROC AUC (test) or tuned threshold (validation) is therefore undefined.
pub fn note_single_class_labels(t: &TrainedHead, progress: &dyn Progress) {
    if !t.test.labels_without_positives.is_empty() {
        progress.note(&format!(
            "run `{}`: no test image has {}: left out of the macro averages",
            t.name,
            t.test.labels_without_positives.join(", ")
        ));
    }
    let all_positive: Vec<&str> = t
        .test
        .labels
        .iter()
        .filter(|l| l.support > 0 && l.support == t.test.images)
        .map(|l| l.label.as_str())
        .collect();
    if !all_positive.is_empty() {
        progress.note(&format!(
            "run `{}`: every test image has {}: their ROC AUC is undefined",
            t.name,
            all_positive.join(", ")
        ));
    }
}

/// How `train` writes its run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Replace an existing run directory (once the new one is complete).
    pub overwrite: bool,
    /// The error gallery, if one is wanted.
    pub gallery: Option<GalleryOptions>,
}

/// A trained run and where it was written.
pub struct RunOutcome {
    /// The trained head and its evaluation.
    pub trained: TrainedHead,
    /// Its run directory.
    pub dir: PathBuf,
}

/// Builds the job of one configuration (its label space) over joined data.
pub fn head_job(name: &str, inputs: &Inputs, joined: &Joined, config: &RunConfig) -> Result<HeadJob> {
    config.validate()?;
    let mut in_train = vec![false; inputs.table.len()];
    for &(_, tr, split) in &joined.rows {
        in_train[tr] = split == Split::Train;
    }
    let labels = LabelSpace::build(&inputs.table, &config.labels, &|row| in_train[row])?;
    Ok(HeadJob {
        name: name.to_string(),
        labels,
        hidden: config.hidden,
        loss: config.loss,
        seed: config.seed,
    })
}

/// Trains one job alone with its configuration's model kind.
pub fn train_job(
    inputs: &Inputs,
    joined: &Joined,
    job: HeadJob,
    config: &RunConfig,
    progress: &dyn Progress,
) -> Result<TrainedHead> {
    match config.model {
        ModelKind::Mlp => {
            let mut trained = train_fused(&inputs.features, joined, &[job], &config.train, progress)?;
            Ok(trained.pop().expect("one job, one head"))
        }
        ModelKind::Linear => {
            progress.start(&format!("linear probe, {} labels", job.labels.len()), 1, "fits");
            let trained = train_linear(&inputs.features, joined, &job, &config.train, &config.probe)?;
            progress.advance(1);
            Ok(trained)
        }
    }
}

/// `head-trainer train`: one configuration, written to the run directory `out` (refused if it
/// exists, unless `overwrite`: then replaced once the new one is complete).
pub fn train_one(
    inputs: &Inputs,
    config: &RunConfig,
    out: &Path,
    options: &TrainOptions,
    progress: &dyn Progress,
) -> Result<RunOutcome> {
    let overwrite = options.overwrite;
    let config = &config.clone().normalized();
    if out.exists() && !overwrite {
        return Err(TrainError::Config(format!(
            "{} already exists: choose another --out, or pass --overwrite to replace it",
            out.display()
        )));
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    let joined = Joined::new(&inputs.features, &inputs.table, &config.split)?;
    note_join(&joined.stats, progress);
    let job = head_job(&name, inputs, &joined, config)?;
    let trained = train_job(inputs, &joined, job, config, progress)?;
    note_single_class_labels(&trained, progress);
    let record = TrainingRecord {
        train_seconds: trained.seconds,
        fused_with: vec![name.clone()],
        threads: rayon::current_num_threads(),
        tool_version: format!("head-trainer {}", env!("CARGO_PKG_VERSION")),
    };
    let art = RunArtifacts {
        trained: &trained,
        config,
        embedding: &inputs.features.meta,
        join: &joined.stats,
        inputs: &inputs.paths,
        record: &record,
        gallery: options.gallery.as_ref(),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        remove_stale_attempts(parent, &name)?;
    }
    let replaced = out.exists().then(|| out.with_file_name(format!(".{name}.replaced")));
    if let Some(old) = &replaced {
        // the old run stays whole under a hidden name until the new one is in place
        let _ = std::fs::remove_dir_all(old);
        std::fs::rename(out, old).map_err(|e| TrainError::io(out, e))?;
    }
    match write_run(out, &art, progress)? {
        DirCommit::Published(dir) => {
            if let Some(old) = replaced {
                std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
            }
            Ok(RunOutcome { trained, dir })
        }
        DirCommit::AlreadyThere(dir) => Err(TrainError::Config(format!(
            "{}: another process wrote this run directory meanwhile",
            dir.display()
        ))),
    }
}

/// `head-trainer predict`: probabilities of a run's head for every embedding of a cache (of the
/// head's model), streamed part by part into `out`; returns the rows written.
pub fn predict(head_dir: &Path, embeddings: &Path, out: &Path, progress: &dyn Progress) -> Result<usize> {
    let run = TrainedRun::load(head_dir)?;
    let cache = EmbeddingCache::open(embeddings)?;
    run.info.check_embeddings(&cache.meta, embeddings)?;
    let ids = cache.read_ids()?;
    check_unique_ids(embeddings, &ids)?;
    drop(ids);
    let mut writer = PredictionWriter::create(out, &run.info, false)?;
    progress.start("predicting", cache.rows() as u64, "images");
    let mut failed = None;
    let read = cache.for_each_batch(|batch| {
        let probs = run.head.predict(&batch.values, batch.len());
        if let Err(e) = writer.write(&batch.ids, &probs, None) {
            failed = Some(e);
            return Err(feature_cache::CacheError::Invalid("stopped".into()));
        }
        progress.advance(batch.len() as u64);
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
    let rows = writer.rows();
    writer.finish()?;
    Ok(rows)
}

/// `head-trainer report`: rebuilds the error gallery (`report.html`, `gallery/`) of a finished
/// run from its predictions; returns the thumbnails made.
pub fn rebuild_gallery(run_dir: &Path, options: &GalleryOptions, progress: &dyn Progress) -> Result<usize> {
    let run = TrainedRun::load(run_dir)?;
    let metrics: crate::run_dir::RunMetrics = {
        let path = run_dir.join(crate::run_dir::METRICS);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?
    };
    let p = crate::predictions::read_predictions(&run_dir.join(crate::run_dir::PREDICTIONS))?;
    let targets = p
        .targets
        .ok_or_else(|| TrainError::Data(format!("{}: predictions without targets", run_dir.display())))?;
    if p.labels != run.info.labels {
        return Err(TrainError::Mismatch(format!(
            "{}: predictions and head.json name other labels",
            run_dir.display()
        )));
    }
    let data = GalleryData {
        run: &run.info.name,
        embedding_model: run.info.embedding.model_identity(),
        labels: &run.info.labels,
        thresholds: &run.info.thresholds.f1,
        ids: &p.ids,
        probs: &p.probs,
        targets: &targets,
        metrics: &metrics.test.labels,
    };
    write_gallery(run_dir, &data, options, progress)
}
