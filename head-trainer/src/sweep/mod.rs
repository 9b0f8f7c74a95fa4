//! Sweeps: many label configurations from one TOML file ([`file`]), trained fused where they
//! share a cache and batch settings, resumable, summarised side by side ([`crate::summary`]).
//!
//! Resume: a run's directory appears only when the run is complete ([`crate::run_dir`]), so a
//! sweep killed at any point and run again trains exactly the runs without a directory and ends
//! with the summary an uninterrupted sweep writes. A finished run whose configuration (or
//! embedding model) is not the sweep's any more is refused, naming what changed — never reused.

pub mod file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use feature_cache::atomic::{remove_stale_temps, DirCommit};
use feature_cache::{EmbeddingCache, Progress, Shard};

use crate::data::Joined;
use crate::error::{Result, TrainError};
use crate::gallery::{GalleryOptions, ImageSources};
use crate::model::ModelKind;
use crate::run::{head_job, note_join, note_single_class_labels, train_job, Inputs};
use crate::run_dir::{remove_stale_attempts, run_state, write_run, RunArtifacts, RunState, TrainingRecord};
use crate::summary::{write_summary, SummaryRow, SUMMARY_FILES};
use crate::train::{plan_groups, train_fused, HeadJob, TrainedHead};

pub use file::{Grid, SweepFile, SweepRun};

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// At most this many heads in one stack.
    pub max_fused: usize,
    /// Train only the runs of this shard (runs dealt out in turn) and write no summary (a final
    /// run without a shard writes it).
    pub shard: Option<Shard>,
    /// Stream caches whose embeddings take more than this many bytes.
    pub memory_limit: Option<u64>,
    /// Images per label and kind in each run's error gallery (0: none).
    pub gallery: usize,
    /// Where the images are, for caches that recorded no origins (default: each run's cache).
    pub images: Option<(String, image_input::InputOptions)>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            max_fused: 16,
            shard: None,
            memory_limit: None,
            gallery: crate::gallery::DEFAULT_PER_LABEL,
            images: None,
        }
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepOutcome {
    /// Runs trained now.
    pub trained: Vec<String>,
    /// Runs already finished and skipped.
    pub skipped: Vec<String>,
    /// The summary of every finished run, as written to `summary.*`.
    pub rows: Vec<SummaryRow>,
}

/// Checks a finished run against the sweep's configuration of it.
fn check_finished(
    dir: &Path,
    r: &SweepRun,
    info: &crate::head_io::HeadInfo,
    caches: &mut BTreeMap<PathBuf, feature_cache::CacheMetadata>,
) -> Result<()> {
    let mut changes = info.config.differences(&r.config);
    let meta = match caches.get(&r.embeddings) {
        Some(m) => m.clone(),
        None => {
            let m = EmbeddingCache::open(&r.embeddings)?.meta;
            caches.insert(r.embeddings.clone(), m.clone());
            m
        }
    };
    if let Some((field, had, has)) = info.embedding.mismatch(&meta) {
        changes.push(format!("embeddings {field}: {had} -> {has}"));
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "run `{}` in {} was trained with another configuration than the sweep's now ({}): remove that \
         directory to train it again, or give the changed run another name",
        r.name,
        dir.display(),
        changes.join("; ")
    )))
}

/// Runs (or resumes) a sweep into `out`.
pub fn run_sweep(
    path: &Path,
    out: &Path,
    options: SweepOptions,
    progress: &dyn Progress,
) -> Result<SweepOutcome> {
    let file = SweepFile::load(path)?;
    let runs = file.expand(path)?;
    let labels_path = path.parent().unwrap_or(Path::new(".")).join(&file.labels);
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut outcome = SweepOutcome::default();
    let mut caches = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<&SweepRun>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        let dir = out.join(&r.name);
        match run_state(&dir)? {
            RunState::Finished(info) => {
                check_finished(&dir, r, &info, &mut caches)?;
                outcome.skipped.push(r.name.clone());
            }
            RunState::Missing if options.shard.is_none_or(|s| s.takes_position(i)) => {
                groups.entry(r.group_key()).or_default().push(r);
            }
            RunState::Missing => {}
        }
    }
    for group in groups.values() {
        train_group(path, out, &labels_path, group, &options, progress, &mut outcome)?;
    }
    let finished: Vec<SweepRun> = runs.iter().filter(|r| out.join(&r.name).is_dir()).cloned().collect();
    outcome.rows = finished.iter().map(|r| SummaryRow::read(&out.join(&r.name), r)).collect::<Result<_>>()?;
    // shards of one sweep may run at once on several nodes: the sweep-level files are written by
    // the final run without a shard alone, which first removes what a killed one left
    if options.shard.is_none() {
        remove_stale_temps(out, &|target| SUMMARY_FILES.contains(&target))?;
        write_summary(out, &finished, &outcome.rows)?;
    }
    Ok(outcome)
}

/// Trains the runs of one group (one cache, one set of batch settings).
fn train_group(
    path: &Path,
    out: &Path,
    labels_path: &Path,
    group: &[&SweepRun],
    options: &SweepOptions,
    progress: &dyn Progress,
    outcome: &mut SweepOutcome,
) -> Result<()> {
    let embeddings = &group[0].embeddings;
    progress.note(&format!(
        "loading {} ({} run{} to train on it)",
        embeddings.display(),
        group.len(),
        if group.len() == 1 { "" } else { "s" }
    ));
    let inputs = Inputs::open(embeddings, labels_path, options.memory_limit)?;
    // the group key includes the split, so one join serves every run of the group
    let joined = Joined::new(&inputs.features, &inputs.table, &group[0].config.split)?;
    note_join(&joined.stats, progress);
    let job_of = |r: &SweepRun| {
        head_job(&r.name, &inputs, &joined, &r.config)
            .map_err(|e| TrainError::Config(format!("{}: run `{}`: {e}", path.display(), r.name)))
    };
    let (mlp, linear): (Vec<&SweepRun>, Vec<&SweepRun>) =
        group.iter().partition(|r| r.config.model == ModelKind::Mlp);
    let jobs: Vec<HeadJob> = mlp.iter().map(|r| job_of(r)).collect::<Result<_>>()?;
    // streamed, only heads with equal rows share a stack (they read the cache together)
    let stacks: Vec<Vec<usize>> = if inputs.features.is_streamed() {
        let plan = plan_groups(&jobs);
        let mut by_plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, p) in plan.into_iter().enumerate() {
            by_plan.entry(p).or_default().push(k);
        }
        by_plan.into_values().collect()
    } else {
        vec![(0..jobs.len()).collect()]
    };
    let gallery = GalleryOptions {
        per_label: options.gallery,
        thumbnail_px: 160,
        images: match &options.images {
            Some((input, opts)) => ImageSources::Input { input: input.clone(), options: opts.clone() },
            None => ImageSources::Cache(embeddings.clone()),
        },
    };
    let mut publish = |t: &TrainedHead, r: &SweepRun, fused_with: Vec<String>| -> Result<()> {
        note_single_class_labels(t, progress);
        let record = TrainingRecord {
            train_seconds: t.seconds,
            fused_with,
            threads: rayon::current_num_threads(),
            tool_version: format!("head-trainer {}", env!("CARGO_PKG_VERSION")),
        };
        let art = RunArtifacts {
            trained: t,
            config: &r.config,
            embedding: &inputs.features.meta,
            join: &joined.stats,
            inputs: &inputs.paths,
            record: &record,
            gallery: Some(&gallery),
        };
        remove_stale_attempts(out, &r.name)?;
        match write_run(&out.join(&r.name), &art, progress)? {
            DirCommit::Published(_) => outcome.trained.push(r.name.clone()),
            DirCommit::AlreadyThere(dir) => {
                progress.note(&format!("{} was finished meanwhile by another process: kept", dir.display()));
                outcome.skipped.push(r.name.clone());
            }
        }
        Ok(())
    };
    for stack in stacks {
        for chunk in stack.chunks(options.max_fused.max(1)) {
            let names: Vec<String> = chunk.iter().map(|&k| mlp[k].name.clone()).collect();
            progress.note(&format!("training {} fused: {}", chunk.len(), names.join(", ")));
            let chunk_jobs: Vec<HeadJob> = chunk.iter().map(|&k| jobs[k].clone()).collect();
            let trained =
                train_fused(&inputs.features, &joined, &chunk_jobs, &mlp[chunk[0]].config.train, progress)?;
            for (t, &k) in trained.iter().zip(chunk) {
                publish(t, mlp[k], names.clone())?;
            }
        }
    }
    for r in linear {
        progress.note(&format!("fitting linear probe: {}", r.name));
        let trained = train_job(&inputs, &joined, job_of(r)?, &r.config, progress)?;
        publish(&trained, r, vec![r.name.clone()])?;
    }
    Ok(())
}
