//! Topic labels in the same pass: `extractor embed --head RUN_DIR` applies trained heads to the
//! embeddings as they are written, so one pass over millions of images yields both.
//!
//! Each head writes, for every embedding part `emb-<shard>-<seq>.parquet`, a predictions part
//! `_heads/<head>/pred-<shard>-<seq>.parquet` with the same ids: `id` and one `p:<label>` per
//! label, the head's `head.json` in the file metadata (see the head-trainer's `predictions`).
//! Heads see the embeddings as the cache stores them (f16 values rounded as written), so their
//! probabilities are the ones `head-trainer predict` computes from the cache. A predictions part
//! is written right after its embedding part; a part that a crash left without predictions gets
//! them from the stored embeddings when the job starts again, as does a cache extracted before
//! the head was added. `_heads/<head>/_head.json` records which head a folder belongs to.

use std::path::{Path, PathBuf};

use feature_cache::{round_to_storage, CacheMetadata, EmbeddingCache, EmbeddingDtype, Progress, Shard};
use head_trainer::head_io::TrainedRun;
use head_trainer::predictions::PredictionWriter;
use sha2::{Digest, Sha256};

use crate::error::{ExtractError, Result};

/// Folder of a cache holding the predictions of heads applied while embedding.
pub const HEADS_DIR: &str = "_heads";

fn io(path: &Path, cause: std::io::Error) -> ExtractError {
    ExtractError::Io { path: path.to_path_buf(), cause }
}

fn trained(e: head_trainer::TrainError) -> ExtractError {
    ExtractError::Usage(e.to_string())
}

/// One head applied while embedding.
pub struct HeadSink {
    run: TrainedRun,
    dir: PathBuf,
    ids: Vec<String>,
    probs: Vec<f32>,
}

impl HeadSink {
    /// The head's name (its folder under `_heads/`).
    pub fn name(&self) -> &str {
        &self.run.info.name
    }
}

/// The heads of a job.
pub struct Heads {
    sinks: Vec<HeadSink>,
    dtype: EmbeddingDtype,
}

/// What identifies a head's predictions folder: its head.json and weights.
#[derive(serde::Serialize, serde::Deserialize)]
struct FolderOwner {
    head: head_trainer::head_io::HeadInfo,
    weights_sha256: String,
}

impl Heads {
    /// Loads the heads of `run_dirs` for a cache of `meta` in `out`; refuses a head trained on
    /// another model's embeddings, two heads of one name, and a folder of another head.
    pub fn load(run_dirs: &[PathBuf], meta: &CacheMetadata, out: &Path) -> Result<Self> {
        let mut sinks: Vec<HeadSink> = Vec::new();
        for d in run_dirs {
            let run = TrainedRun::load(d).map_err(trained)?;
            run.info
                .check_embeddings(
                    meta,
                    &PathBuf::from(format!("the embeddings of this job ({})", out.display())),
                )
                .map_err(|e| ExtractError::Usage(format!("--head {}: {e}", d.display())))?;
            if sinks.iter().any(|s| s.name() == run.info.name) {
                return Err(ExtractError::Usage(format!(
                    "two heads are named `{}`: give one run another name",
                    run.info.name
                )));
            }
            let dir = out.join(HEADS_DIR).join(&run.info.name);
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let weights = d.join(head_trainer::head_io::HEAD_WEIGHTS);
            let owner = FolderOwner {
                head: run.info.clone(),
                weights_sha256: hex::encode(Sha256::digest(
                    std::fs::read(&weights).map_err(|e| io(&weights, e))?,
                )),
            };
            let owner_path = dir.join("_head.json");
            match std::fs::read_to_string(&owner_path) {
                Ok(text) => {
                    let same = serde_json::from_str::<FolderOwner>(&text)
                        .is_ok_and(|o| o.weights_sha256 == owner.weights_sha256);
                    if !same {
                        return Err(ExtractError::Usage(format!(
                            "{} holds the predictions of another head named `{}`: remove it, or rename the run",
                            dir.display(),
                            run.info.name
                        )));
                    }
                }
                Err(_) => {
                    let text = serde_json::to_string_pretty(&owner)
                        .map_err(|e| ExtractError::Usage(e.to_string()))?;
                    feature_cache::atomic::write_atomic(&owner_path, text.as_bytes())?;
                }
            }
            sinks.push(HeadSink { run, dir, ids: Vec::new(), probs: Vec::new() });
        }
        Ok(Self { sinks, dtype: meta.dtype })
    }

    /// Whether there is any head.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Applies every head to a batch of embeddings (`ids.len() x dim`), as the cache will
    /// store them, and keeps the probabilities for the part in progress.
    pub fn apply(&mut self, ids: &[&str], values: &[f32]) {
        if self.sinks.is_empty() {
            return;
        }
        let mut stored = values.to_vec();
        round_to_storage(&mut stored, self.dtype);
        for s in &mut self.sinks {
            s.probs.extend(s.run.head.predict(&stored, ids.len()));
            s.ids.extend(ids.iter().map(|id| id.to_string()));
        }
    }

    /// Writes the predictions of the rows kept so far as the parts matching the embedding part
    /// `part` (its first `rows` kept rows), keeping the rest for the next part.
    pub fn finish_part(&mut self, part: &Path, rows: usize) -> Result<()> {
        for s in &mut self.sinks {
            let m = s.run.info.labels.len();
            let path = s.dir.join(prediction_name(part));
            let mut w = PredictionWriter::create(&path, &s.run.info, false).map_err(trained)?;
            w.write(&s.ids[..rows], &s.probs[..rows * m], None).map_err(trained)?;
            w.finish().map_err(trained)?;
            s.ids.drain(..rows);
            s.probs.drain(..rows * m);
        }
        Ok(())
    }

    /// Gives every finished embedding part of `shard` in `out` that lacks a head's predictions
    /// those predictions, from the stored embeddings; returns how many parts it filled in.
    pub fn fill_in(&self, out: &Path, shard: Shard, progress: &dyn Progress) -> Result<usize> {
        if self.sinks.is_empty() {
            return Ok(0);
        }
        let Some(cache) = EmbeddingCache::open_if_any(out)? else { return Ok(0) };
        let tag = format!("emb-{}-", shard.tag());
        let mut filled = 0;
        for part in cache.parts.iter().filter(|p| file_name(&p.path).starts_with(&tag)) {
            for s in &self.sinks {
                let path = s.dir.join(prediction_name(&part.path));
                if path.exists() {
                    continue;
                }
                let mut w = PredictionWriter::create(&path, &s.run.info, false).map_err(trained)?;
                let mut failed = None;
                part.for_each_batch(|batch| {
                    let probs = s.run.head.predict(&batch.values, batch.len());
                    if let Err(e) = w.write(&batch.ids, &probs, None) {
                        failed = Some(e);
                        return Err(feature_cache::CacheError::Invalid("stopped".into()));
                    }
                    Ok(())
                })
                .or_else(|e| if failed.is_some() { Ok(()) } else { Err(e) })?;
                if let Some(e) = failed {
                    return Err(trained(e));
                }
                w.finish().map_err(trained)?;
                filled += 1;
            }
        }
        if filled > 0 {
            progress.note(&format!("computed {filled} predictions parts of finished parts from the cache"));
        }
        Ok(filled)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `emb-s0000of0001-000003.parquet` -> `pred-s0000of0001-000003.parquet`.
fn prediction_name(part: &Path) -> String {
    let name = file_name(part);
    format!("pred-{}", name.strip_prefix("emb-").unwrap_or(&name))
}
