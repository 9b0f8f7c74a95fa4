//! An extraction job: manifest -> shard -> skip finished ids -> decode/preprocess (rayon) overlapped
//! with inference -> atomic Parquet parts and failure tables.
//!
//! Crash safety: a part becomes visible only when complete (temp + rename), and its failures are
//! written right after it. A rerun reads the ids of every finished part and failure table and
//! embeds only the rest, so a killed job resumes with no duplicates and loses at most the part in
//! progress (`--part-size` images).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use crossbeam_channel::bounded;
use feature_cache::failures::read_cache_failures;
use feature_cache::split::hash_unit;
use feature_cache::{
    CacheMetadata, EmbeddingCache, EmbeddingDtype, EmbeddingWriter, Failure, FailureWriter, ImageEntry,
    ImageManifest, Pooling,
};
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::decode::{decode_file, DecodeOptions, FailureKind, ImageFailure};
use crate::embed::{Device, Embedder, EmbedderConfig};
use crate::error::{ExtractError, Result};
use crate::model::{ModelManifest, ResizePolicy};
use crate::preprocess::preprocess_into;

/// One shard of a job split over several processes or nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this shard.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole job.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether `id` belongs to this shard (by a hash of the id, so shards stay stable when the
    /// manifest is reordered or grows).
    pub fn contains(&self, id: &str) -> bool {
        self.count <= 1
            || ((hash_unit("wit-shard", id) * self.count as f64) as usize).min(self.count - 1) == self.index
    }

    /// From `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT` (offset by `SLURM_ARRAY_TASK_MIN`).
    pub fn from_slurm_env() -> Result<Option<Shard>> {
        let var = |k: &str| std::env::var(k).ok();
        let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) else {
            return Ok(None);
        };
        let parse = |k: &str, v: &str| {
            v.parse::<usize>().map_err(|_| ExtractError::Usage(format!("{k}={v} is not a number")))
        };
        let min = match var("SLURM_ARRAY_TASK_MIN") {
            Some(m) => parse("SLURM_ARRAY_TASK_MIN", &m)?,
            None => 0,
        };
        let index = parse("SLURM_ARRAY_TASK_ID", &id)?.checked_sub(min).ok_or_else(|| {
            ExtractError::Usage(format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"))
        })?;
        format!("{index}/{count}").parse().map(Some)
    }

    fn tag(&self) -> String {
        format!("s{:04}of{:04}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ExtractError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || ExtractError::Usage(format!("--shard {s}: expected I/N with 0 <= I < N, e.g. 3/16"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) =
            (i.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Everything an extraction job needs.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Directory of images or manifest table.
    pub input: PathBuf,
    /// Model name or manifest/ONNX path.
    pub model: String,
    /// Cache directory to write.
    pub out: PathBuf,
    /// Device for inference.
    pub device: Device,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Storage type of the embeddings.
    pub dtype: EmbeddingDtype,
    /// Pooling of the last feature map.
    pub pooling: Pooling,
    /// Input side override (default: the manifest's).
    pub input_size: Option<u32>,
    /// Resize policy override (default: the manifest's).
    pub resize: Option<ResizePolicy>,
    /// This process's shard.
    pub shard: Shard,
    /// Threads for decoding and CPU inference (0 = all cores).
    pub threads: usize,
    /// Images per Parquet part (the unit of resume).
    pub part_size: usize,
    /// Decoding limits.
    pub decode: DecodeOptions,
    /// DCT-domain JPEG downscaling keeps the decoded crop at least this many times the input
    /// size (0 disables it; see BENCHMARKS.md for the embedding agreement it keeps).
    pub jpeg_draft_margin: f64,
}

/// Default of [`JobConfig::jpeg_draft_margin`].
pub const DEFAULT_JPEG_DRAFT_MARGIN: f64 = 4.0;

/// Short side a JPEG may be DCT-downscaled to: the crop of the resize policy stays at least
/// `margin` x the input size.
pub fn jpeg_min_short_side(resize: ResizePolicy, input_size: u32, margin: f64) -> Option<u32> {
    if margin <= 0.0 {
        return None;
    }
    let crop = match resize {
        ResizePolicy::CenterCrop { crop_fraction } => crop_fraction,
        ResizePolicy::Stretch => 1.0,
    };
    Some((f64::from(input_size) * margin / crop).ceil() as u32)
}

/// What a job did.
#[derive(Debug, Clone, Default)]
pub struct JobSummary {
    /// Images in this shard of the manifest (accepted and rejected).
    pub in_shard: usize,
    /// Already finished by an earlier run (embedded or failed).
    pub already_done: usize,
    /// Embedded by this run.
    pub embedded: usize,
    /// Failed in this run.
    pub failed: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Device used.
    pub device: String,
    /// Parts written by this run.
    pub parts_written: Vec<PathBuf>,
}

struct Prepared {
    entry: ImageEntry,
    result: std::result::Result<(Vec<u8>, u32, u32), ImageFailure>,
}

/// Runs a job; `progress` gets its length set and is advanced per image; `note` is told about
/// choices the user should know of (e.g. CUDA unavailable) as soon as they are made.
pub fn run(cfg: &JobConfig, progress: &ProgressBar, note: &dyn Fn(&str)) -> Result<JobSummary> {
    let start = Instant::now();
    let manifest = ModelManifest::resolve(&cfg.model)?;
    let input_size = cfg.input_size.unwrap_or(manifest.input.size);
    let resize = cfg.resize.unwrap_or(manifest.input.resize);
    if input_size < 32 {
        return Err(ExtractError::Usage(format!("--input-size {input_size}: must be at least 32")));
    }
    if cfg.batch_size == 0 || cfg.part_size == 0 {
        return Err(ExtractError::Usage("--batch-size and --part-size must be positive".into()));
    }
    let images = ImageManifest::load(&cfg.input)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| ExtractError::Io { path: cfg.out.clone(), cause: e })?;

    let mut embedder = Embedder::new(
        &manifest,
        &EmbedderConfig { device: cfg.device, threads: cfg.threads, pooling: cfg.pooling, input_size },
    )?;
    let meta = CacheMetadata {
        model: manifest.name.clone(),
        model_sha256: manifest.sha256.clone(),
        dim: embedder.dim(),
        pooling: cfg.pooling,
        input_size,
        preprocessing: manifest.preprocessing(resize),
        dtype: cfg.dtype,
        tool_version: format!("extractor {}", env!("CARGO_PKG_VERSION")),
    };
    let done = finished_ids(&cfg.out, &meta)?;

    embedder.notes.iter().for_each(|n| note(n));
    let mut summary = JobSummary { device: embedder.device().to_string(), ..Default::default() };
    let mut pending_failures: Vec<Failure> = Vec::new();
    for r in images.rejected.iter().filter(|r| cfg.shard.contains(&r.id)) {
        summary.in_shard += 1;
        if done.contains(&r.id) {
            summary.already_done += 1;
        } else {
            pending_failures.push(Failure {
                id: r.id.clone(),
                path: r.path.clone(),
                kind: FailureKind::BadName.as_str().into(),
                reason: r.reason.clone(),
            });
        }
    }
    let mut todo: Vec<ImageEntry> = Vec::new();
    for e in images.entries.into_iter().filter(|e| cfg.shard.contains(&e.id)) {
        summary.in_shard += 1;
        if done.contains(&e.id) {
            summary.already_done += 1;
        } else {
            todo.push(e);
        }
    }
    summary.failed += pending_failures.len();
    progress.set_length((todo.len() + pending_failures.len()) as u64);
    progress.inc(pending_failures.len() as u64);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| ExtractError::Usage(format!("thread pool: {e}")))?;
    let mut parts = PartSequence::new(&cfg.out, cfg.shard)?;
    let mut writer: Option<EmbeddingWriter> = None;
    let (tx, rx) = bounded::<Vec<Prepared>>(2);
    let size = input_size;
    let decode_opts = DecodeOptions {
        jpeg_min_short_side: jpeg_min_short_side(resize, input_size, cfg.jpeg_draft_margin),
        ..cfg.decode
    };

    std::thread::scope(|scope| -> Result<()> {
        let producer = scope.spawn(move || {
            for batch in todo.chunks(cfg.batch_size) {
                let prepared: Vec<Prepared> = pool.install(|| {
                    batch
                        .par_iter()
                        .map(|entry| Prepared {
                            entry: entry.clone(),
                            result: prepare(&entry.path, &decode_opts, resize, size),
                        })
                        .collect()
                });
                if tx.send(prepared).is_err() {
                    break; // consumer stopped on an error
                }
            }
        });
        let mut pixels: Vec<u8> = Vec::new();
        for batch in rx.iter() {
            pixels.clear();
            let mut ok: Vec<(&ImageEntry, u32, u32)> = Vec::with_capacity(batch.len());
            for p in &batch {
                match &p.result {
                    Ok((buf, w, h)) => {
                        pixels.extend_from_slice(buf);
                        ok.push((&p.entry, *w, *h));
                    }
                    Err(f) => pending_failures.push(Failure {
                        id: p.entry.id.clone(),
                        path: p.entry.path.to_string_lossy().into_owned(),
                        kind: f.kind.as_str().into(),
                        reason: f.message.clone(),
                    }),
                }
            }
            summary.failed += batch.len() - ok.len();
            if !ok.is_empty() {
                let values = embedder.embed(&pixels, ok.len())?;
                let dim = embedder.dim();
                let w = match writer.as_mut() {
                    Some(w) => w,
                    None => {
                        writer.insert(EmbeddingWriter::create(parts.next_embedding_path(), meta.clone())?)
                    }
                };
                for (i, (entry, width, height)) in ok.iter().enumerate() {
                    w.push(&entry.id, &values[i * dim..(i + 1) * dim], *width, *height)?;
                }
                summary.embedded += ok.len();
                if w.rows() >= cfg.part_size {
                    let finished = writer.take().expect("writer present");
                    summary.parts_written.push(parts.finish(finished, &mut pending_failures)?);
                }
            }
            progress.inc(batch.len() as u64);
        }
        producer.join().expect("decode thread panicked");
        Ok(())
    })?;
    if let Some(w) = writer.take() {
        summary.parts_written.push(parts.finish(w, &mut pending_failures)?);
    }
    parts.flush_failures(&mut pending_failures)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Decodes and preprocesses one image; any failure, a panic included, is the image's alone.
fn prepare(
    path: &Path,
    opts: &DecodeOptions,
    resize: ResizePolicy,
    size: u32,
) -> std::result::Result<(Vec<u8>, u32, u32), ImageFailure> {
    std::panic::catch_unwind(|| {
        let img = decode_file(path, opts)?;
        let mut buf = Vec::new();
        preprocess_into(&img.rgb, resize, size, &mut buf)
            .map_err(|m| ImageFailure::new(FailureKind::Preprocess, m))?;
        Ok((buf, img.width, img.height))
    })
    .unwrap_or_else(|_| {
        Err(ImageFailure::new(FailureKind::DecoderPanic, "panicked while decoding or resizing"))
    })
}

/// Ids already finished in `out` (embedded or failed); refuses a directory of another model.
fn finished_ids(out: &Path, meta: &CacheMetadata) -> Result<HashSet<String>> {
    let mut done = HashSet::new();
    if !EmbeddingCache::part_paths(out)?.is_empty() {
        let cache = EmbeddingCache::open(out)?;
        if let Some((field, have, want)) = cache.meta.mismatch(meta) {
            return Err(ExtractError::Usage(format!(
                "{} already holds embeddings with {field} = {have}; this job would write {field} = {want}. \
                 Use another --out directory (a cache holds one model's embeddings)",
                out.display()
            )));
        }
        done.extend(cache.read_ids()?);
    }
    done.extend(read_cache_failures(out)?.into_iter().map(|f| f.id));
    Ok(done)
}

/// Names parts `emb-<shard>-<seq>.parquet` and failure tables `failures-<shard>-<seq>.parquet`.
struct PartSequence {
    out: PathBuf,
    tag: String,
    next: usize,
}

impl PartSequence {
    fn new(out: &Path, shard: Shard) -> Result<Self> {
        let tag = shard.tag();
        let mut next = 0;
        let entries =
            std::fs::read_dir(out).map_err(|e| ExtractError::Io { path: out.to_path_buf(), cause: e })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let seq = ["emb-", "failures-"].iter().find_map(|p| {
                name.strip_prefix(p)?
                    .strip_prefix(&tag)?
                    .strip_prefix('-')?
                    .strip_suffix(".parquet")?
                    .parse::<usize>()
                    .ok()
            });
            if let Some(seq) = seq {
                next = next.max(seq + 1);
            }
        }
        Ok(Self { out: out.to_path_buf(), tag, next })
    }

    fn next_embedding_path(&self) -> PathBuf {
        self.out.join(format!("emb-{}-{:06}.parquet", self.tag, self.next))
    }

    fn finish(&mut self, writer: EmbeddingWriter, failures: &mut Vec<Failure>) -> Result<PathBuf> {
        let path = writer.finish()?;
        self.write_failures(failures)?;
        self.next += 1;
        Ok(path)
    }

    /// Writes failures not attached to a part (the last batches had no successful image).
    fn flush_failures(&mut self, failures: &mut Vec<Failure>) -> Result<()> {
        if !failures.is_empty() {
            self.write_failures(failures)?;
            self.next += 1;
        }
        Ok(())
    }

    fn write_failures(&self, failures: &mut Vec<Failure>) -> Result<()> {
        if !failures.is_empty() {
            let path = self.out.join(format!("failures-{}-{:06}.parquet", self.tag, self.next));
            FailureWriter::write(&path, failures)?;
            failures.clear();
        }
        Ok(())
    }
}
