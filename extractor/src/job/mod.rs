//! An extraction job: input catalog -> this shard -> skip finished ids -> decode and preprocess
//! on worker threads, in input order ([`pipeline`]) -> inference in batches -> atomic Parquet
//! parts and failure tables ([`parts`]).
//!
//! Crash safety: a part becomes visible only when complete (temp + rename), and its failures are
//! written right after it. A rerun reads the ids of every finished part and failure table and
//! embeds only the rest, so a killed job resumes with no duplicates and loses at most the part in
//! progress (`--part-size` images). Embeddings do not depend on which batch an image lands in, so
//! the resumed cache holds the same values as an uninterrupted run.

pub mod heads;
pub mod parts;
pub mod pipeline;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use feature_cache::failures::read_cache_failures;
use feature_cache::{
    CacheMetadata, EmbeddingCache, EmbeddingDtype, Failure, Origin, Pooling, Progress, Shard,
};
use image_input::{
    decode::CentreCrop, decode_bytes, Catalog, DecodeOptions, FailureKind, ImageFailure, InputOptions,
    SourceImage,
};

use crate::embed::{Device, Embedder, EmbedderConfig};
use crate::error::{ExtractError, Result};
use crate::model::{ModelManifest, ResizePolicy};
use crate::preprocess::preprocess_into;
use parts::{Parts, ShardLock};

/// Everything an extraction job needs.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The input: a directory, manifest table, Parquet or tar shards (see [`image_input`]).
    pub input: String,
    /// How to read the input.
    pub input_options: InputOptions,
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
    /// Images per Parquet part at most (the unit of resume).
    pub part_size: usize,
    /// Images with more pixels are recorded as too large.
    pub max_pixels: u64,
    /// DCT-domain JPEG downscaling keeps the decoded crop at least this many times the input
    /// size (0 disables it; see BENCHMARKS.md for the embedding agreement it keeps).
    pub jpeg_draft_margin: f64,
    /// Run directories of heads to apply in the same pass ([`heads`]).
    pub heads: Vec<PathBuf>,
}

/// Default of [`JobConfig::jpeg_draft_margin`]: the decoded crop is at least 3x the input
/// size, which keeps every embedding within cosine 0.995 of a full decode's (BENCHMARKS.md).
pub const DEFAULT_JPEG_DRAFT_MARGIN: f64 = 3.0;
/// Default of [`JobConfig::batch_size`].
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Default of [`JobConfig::part_size`].
pub const DEFAULT_PART_SIZE: usize = 4096;

impl JobConfig {
    /// A job embedding `input` with `model` into `out`, with every other setting at the
    /// command line's default: automatic device, f16 average-pooled embeddings at the model's
    /// own input size and resize policy, the whole input, all cores, no heads.
    pub fn new(input: impl Into<String>, model: impl Into<String>, out: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            input_options: InputOptions::default(),
            model: model.into(),
            out: out.into(),
            device: Device::Auto,
            batch_size: DEFAULT_BATCH_SIZE,
            dtype: EmbeddingDtype::F16,
            pooling: Pooling::Avg,
            input_size: None,
            resize: None,
            shard: Shard::ALL,
            threads: 0,
            part_size: DEFAULT_PART_SIZE,
            max_pixels: image_input::decode::DEFAULT_MAX_PIXELS,
            jpeg_draft_margin: DEFAULT_JPEG_DRAFT_MARGIN,
            heads: Vec::new(),
        }
    }
}

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
    /// Images in this shard of the input (images and rejected items).
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

/// One image ready for the network, or why not.
pub struct Prepared {
    /// Its id.
    pub id: String,
    /// Where it came from.
    pub origin: Origin,
    /// `size x size x 3` pixels and the original width and height, or the failure.
    pub result: std::result::Result<(Vec<u8>, u32, u32), ImageFailure>,
}

/// How every image of a job is turned into network input.
#[derive(Debug, Clone, Copy)]
pub struct Preparation {
    /// Decoding limits and JPEG downscaling.
    pub decode: DecodeOptions,
    /// Crop and resize policy.
    pub resize: ResizePolicy,
    /// Square side of the network input.
    pub size: u32,
}

impl Preparation {
    /// The preparation for a network input of `size` px by `resize`: decoding limited to
    /// `max_pixels`, JPEGs decoded at a reduced scale as `jpeg_draft_margin` allows, and only
    /// the part of the image a centre crop reads.
    pub fn new(resize: ResizePolicy, size: u32, max_pixels: u64, jpeg_draft_margin: f64) -> Self {
        let centre_crop = match resize {
            ResizePolicy::CenterCrop { crop_fraction } => {
                Some(CentreCrop { fraction: crop_fraction, output_size: size })
            }
            ResizePolicy::Stretch => None,
        };
        let decode = DecodeOptions {
            max_pixels,
            jpeg_min_short_side: jpeg_min_short_side(resize, size, jpeg_draft_margin),
            centre_crop,
            ..DecodeOptions::default()
        };
        Self { decode, resize, size }
    }

    /// Reads, decodes and preprocesses one image; any failure, a panic included, is the
    /// image's alone.
    pub fn prepare(&self, mut image: SourceImage) -> Prepared {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let bytes = image.take_bytes()?;
            self.network_input(&bytes, image.extension.as_deref())
        }))
        .unwrap_or_else(|_| {
            Err(ImageFailure::new(FailureKind::DecoderPanic, "panicked while decoding or resizing"))
        });
        Prepared { id: image.id, origin: image.origin, result }
    }
}

impl Preparation {
    /// Decodes and preprocesses image bytes (`extension`: of their name, if any): the
    /// `size x size x 3` network input and the original width and height.
    pub fn network_input(
        &self,
        bytes: &[u8],
        extension: Option<&str>,
    ) -> std::result::Result<(Vec<u8>, u32, u32), ImageFailure> {
        let img = decode_bytes(bytes, extension, &self.decode)?;
        let mut buf = Vec::new();
        preprocess_into(&img.rgb, img.frame, self.resize, self.size, &mut buf)
            .map_err(|m| ImageFailure::new(FailureKind::Preprocess, m))?;
        Ok((buf, img.width, img.height))
    }
}

/// Images the reader may be ahead of inference: a few batches.
pub fn window(batch_size: usize, workers: usize) -> usize {
    (batch_size * 3).max(workers * 4)
}

/// Threads to use for `threads` (0: every core).
pub fn thread_count(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn failure(id: String, origin: Option<Origin>, f: &ImageFailure) -> Failure {
    Failure { id, kind: f.kind.as_str().into(), reason: f.message.clone(), origin }
}

/// Runs a job; `progress` hears the listing, then one unit per image, and notes the user should
/// know of (CUDA unavailable, the columns read, stale temporaries removed).
pub fn run(cfg: &JobConfig, progress: &dyn Progress) -> Result<JobSummary> {
    let start = Instant::now();
    let manifest = ModelManifest::resolve(&cfg.model)?;
    let size = cfg.input_size.unwrap_or(manifest.input.size);
    let resize = cfg.resize.unwrap_or(manifest.input.resize);
    if size < 32 {
        return Err(ExtractError::Usage(format!("--input-size {size}: must be at least 32")));
    }
    if cfg.batch_size == 0 || cfg.part_size == 0 {
        return Err(ExtractError::Usage("--batch-size and --part-size must be positive".into()));
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| ExtractError::Io { path: cfg.out.clone(), cause: e })?;
    let lock = ShardLock::acquire(&cfg.out, cfg.shard)?;
    if lock.stale_removed > 0 {
        progress.note(&format!(
            "removed {} unfinished temporary files of shard {} left by a killed run",
            lock.stale_removed, cfg.shard
        ));
    }

    let workers = thread_count(cfg.threads);
    let mut embedder = Embedder::new(
        &manifest,
        &EmbedderConfig { device: cfg.device, threads: workers, pooling: cfg.pooling, input_size: size },
    )?;
    embedder.notes.iter().for_each(|n| progress.note(n));
    let meta = CacheMetadata {
        model: manifest.name.clone(),
        model_sha256: manifest.sha256.clone(),
        dim: embedder.dim(),
        pooling: cfg.pooling,
        input_size: size,
        preprocessing: manifest.preprocessing(resize),
        dtype: cfg.dtype,
        tool_version: format!("extractor {}", env!("CARGO_PKG_VERSION")),
    };
    let done = finished_ids(&cfg.out, &meta)?;
    let mut catalog = Catalog::open(&cfg.input, &cfg.input_options, cfg.shard, progress)?;
    catalog.notes.iter().for_each(|n| progress.note(n));
    let mut summary =
        JobSummary { device: embedder.device().to_string(), in_shard: catalog.len(), ..Default::default() };
    catalog.retain(|id| !done.contains(id));
    summary.already_done = summary.in_shard - catalog.len();
    drop(done);

    let heads = heads::Heads::load(&cfg.heads, &meta, &cfg.out)?;
    heads.fill_in(&cfg.out, cfg.shard, progress)?;
    let mut parts = Parts::new(&cfg.out, cfg.shard, meta.clone(), cfg.part_size, heads)?;
    progress.start("embedding", catalog.len() as u64, "images");
    for r in std::mem::take(&mut catalog.rejected) {
        parts.fail(failure(r.id, r.origin, &r.failure))?;
        summary.failed += 1;
        progress.advance(1);
    }
    let prep = Preparation::new(resize, size, cfg.max_pixels, cfg.jpeg_draft_margin);
    let mut batch = Batch::default();
    pipeline::prepare_in_order(
        &catalog,
        workers,
        window(cfg.batch_size, workers),
        &|image| prep.prepare(image),
        &mut |p: Prepared| {
            progress.advance(1);
            match p.result {
                Ok((pixels, w, h)) => {
                    batch.push(p.id, p.origin, &pixels, w, h);
                    if batch.len() >= cfg.batch_size {
                        summary.embedded += batch.embed_into(&mut embedder, &mut parts)?;
                    }
                }
                Err(f) => {
                    summary.failed += 1;
                    parts.fail(failure(p.id, Some(p.origin), &f))?;
                }
            }
            Ok(())
        },
    )?;
    summary.embedded += batch.embed_into(&mut embedder, &mut parts)?;
    summary.parts_written = parts.finish()?;
    summary.seconds = start.elapsed().as_secs_f64();
    drop(lock);
    Ok(summary)
}

/// Images waiting for inference.
#[derive(Default)]
struct Batch {
    pixels: Vec<u8>,
    rows: Vec<(String, Origin, u32, u32)>,
}

impl Batch {
    fn push(&mut self, id: String, origin: Origin, pixels: &[u8], w: u32, h: u32) {
        self.pixels.extend_from_slice(pixels);
        self.rows.push((id, origin, w, h));
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Runs the network on the batch, applies the heads and appends the embeddings to the
    /// parts; returns how many.
    fn embed_into(&mut self, embedder: &mut Embedder, parts: &mut Parts) -> Result<usize> {
        if self.rows.is_empty() {
            return Ok(0);
        }
        let values = embedder.embed(&self.pixels, self.rows.len())?;
        let dim = embedder.dim();
        let ids: Vec<&str> = self.rows.iter().map(|r| r.0.as_str()).collect();
        parts.heads.apply(&ids, &values);
        for (i, (id, origin, w, h)) in self.rows.iter().enumerate() {
            parts.push(id, &values[i * dim..(i + 1) * dim], *w, *h, origin)?;
        }
        let n = self.rows.len();
        self.pixels.clear();
        self.rows.clear();
        Ok(n)
    }
}

/// Ids already finished in `out` (embedded or failed). Refuses a directory of another model, and
/// one written in format 1 (whose layout this build does not extend: `extractor migrate` first).
pub fn finished_ids(out: &Path, meta: &CacheMetadata) -> Result<HashSet<String>> {
    let mut done = HashSet::new();
    if let Some(cache) = EmbeddingCache::open_if_any(out)? {
        if let Some((field, have, want)) = cache.meta.mismatch(meta) {
            return Err(ExtractError::Usage(format!(
                "{} already holds embeddings with {field} = {have}; this job would write {field} = {want}. \
                 Use another --out directory (a cache holds one model's embeddings)",
                out.display()
            )));
        }
        if let Some(old) =
            cache.parts.iter().find(|p| p.format_version < feature_cache::embeddings::FORMAT_VERSION)
        {
            return Err(ExtractError::Usage(format!(
                "{} was written by an older extractor (format {}, e.g. {}): run `extractor migrate {}` once, \
                 then resume",
                out.display(),
                old.format_version,
                old.path.display(),
                out.display()
            )));
        }
        done.extend(cache.read_ids()?);
    }
    if feature_cache::failures::failure_table_paths(out)?.iter().any(|p| p.parent() == Some(out)) {
        return Err(ExtractError::Usage(format!(
            "{} holds failure tables of the format-1 layout: run `extractor migrate {}` once, then resume",
            out.display(),
            out.display()
        )));
    }
    done.extend(read_cache_failures(out)?.into_iter().map(|f| f.id));
    Ok(done)
}
