//! The `train` and `predict` commands as library functions.

use std::path::{Path, PathBuf};

use feature_cache::{check_unique_ids, EmbeddingCache, LabelTable, Split};
use indicatif::ProgressBar;

use crate::config::RunConfig;
use crate::data::{Features, Joined};
use crate::error::{Result, TrainError};
use crate::labels::LabelSpace;
use crate::linear::train_linear;
use crate::model::ModelKind;
use crate::report::{load_head, write_predictions, write_run, HeadInfo};
use crate::train::{train_fused, HeadJob, TrainedHead};

/// Embeddings and labels loaded once, shared by every run on them.
pub struct Inputs {
    /// The embeddings.
    pub features: Features,
    /// The label table.
    pub table: LabelTable,
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
        Ok(Self { features: Features::open(&cache, memory_limit)?, table: LabelTable::load(labels)? })
    }
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
    progress: &ProgressBar,
) -> Result<TrainedHead> {
    match config.model {
        ModelKind::Mlp => {
            let mut trained = train_fused(&inputs.features, joined, &[job], &config.train, progress)?;
            Ok(trained.pop().expect("one job, one head"))
        }
        ModelKind::Linear => {
            progress.set_length(1);
            progress.set_message(format!("linear probe: {} labels", job.labels.len()));
            let trained = train_linear(&inputs.features, joined, &job, &config.train, &config.probe)?;
            progress.inc(1);
            Ok(trained)
        }
    }
}

/// `head-trainer train`: one configuration, written to `out`.
pub fn train_one(
    inputs: &Inputs,
    config: &RunConfig,
    out: &Path,
    progress: &ProgressBar,
) -> Result<RunOutcome> {
    let joined = Joined::new(&inputs.features, &inputs.table, &config.split)?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    let job = head_job(&name, inputs, &joined, config)?;
    let trained = train_job(inputs, &joined, job, config, progress)?;
    let dir = write_run(out, &trained, config, &inputs.features.meta, &joined.stats)?;
    Ok(RunOutcome { trained, dir })
}

/// `head-trainer predict`: probabilities for every embedding of a cache; returns rows written.
pub fn predict(head_dir: &Path, embeddings: &Path, out: &Path) -> Result<usize> {
    let info_path = head_dir.join("head.json");
    let text = std::fs::read_to_string(&info_path).map_err(|e| TrainError::io(&info_path, e))?;
    let info: HeadInfo = serde_json::from_str(&text)
        .map_err(|e| TrainError::Mismatch(format!("{}: {e}", info_path.display())))?;
    let head = load_head(&head_dir.join("head.safetensors"), info.model)?;
    let cache = EmbeddingCache::open(embeddings)?;
    if let Some((field, have, want)) = info.embedding.mismatch(&cache.meta) {
        return Err(TrainError::Mismatch(format!(
            "{}: embeddings have {field} = {want}, but the head was trained on {field} = {have} ({}); \
             extract them with the head's model",
            embeddings.display(),
            info.embedding.model_identity()
        )));
    }
    // streamed part by part: `predict` never holds more than a row group of embeddings
    let m = head.shape().outputs;
    let (mut ids, mut probs) = (Vec::with_capacity(cache.rows()), Vec::with_capacity(cache.rows() * m));
    cache.for_each_batch(|batch| {
        probs.extend(head.predict(&batch.values, batch.len()));
        ids.extend(batch.ids);
        Ok(())
    })?;
    check_unique_ids(embeddings, &ids)?;
    write_predictions(out, &ids, &info.labels, &probs, None)?;
    Ok(ids.len())
}
