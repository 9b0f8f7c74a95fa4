//! `extractor`: embed images once with a frozen EfficientNet and cache the embeddings as Parquet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use extractor::bench::Stage;
use extractor::embed::Device;
use extractor::job::{self, JobConfig, Preparation};
use extractor::model::{ModelManifest, ResizePolicy};
use feature_cache::{EmbeddingDtype, Pooling, Shard};
use image_input::{InputKind, InputOptions, ParquetOptions};
use terminal::{emit, Bar};

/// Embed every image once with a frozen ImageNet EfficientNet (ONNX Runtime, CUDA or CPU) and
/// write the penultimate-layer embeddings to a Parquet feature cache for `head-trainer`.
#[derive(Parser)]
#[command(version, about, long_about = None, args_override_self = true, after_help = "\
Examples:
  extractor embed images/ --model efficientnet-lite0 --out cache/lite0
  extractor embed manifest.csv --model models/efficientnet-b0.json --out cache/b0 --device cuda --shard 3/16
  extractor embed 'wit/*.parquet' --model efficientnet-b0 --out cache/wit-b0
  extractor embed 'shards/{00000..00329}.tar' --model efficientnet-lite0 --out cache/commons
  extractor embed images/ --model efficientnet-lite0 --pooling flatten --input-size 64 --out cache/seed64
  extractor info cache/lite0
  extractor bench-decode 'wit/*.parquet' --threads 16")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed the images of an input (resumable: finished ids are skipped).
    Embed(Box<EmbedArgs>),
    /// Summarise a cache: rows, model, dim, shards, duplicate ids, failures by reason.
    Info {
        /// Cache directory (or one Parquet part).
        cache: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a cache of an older extractor (format 1) in the current layout, in place.
    Migrate {
        /// Cache directory.
        cache: PathBuf,
    },
    /// Decode and preprocess an input exactly as `embed` does, without inference or output:
    /// the decode ceiling of this machine (images/s, and per thread).
    BenchDecode(Box<BenchArgs>),
}

/// How to read an input.
#[derive(clap::Args)]
struct InputArgs {
    /// What the input is (default: detected; see `--help`).
    #[arg(long, value_enum)]
    input_kind: Option<KindArg>,
    /// Parquet shards: the column of image bytes (default: a Hugging Face `Image` column, a
    /// struct with binary `bytes`, or a binary `jpg`/`png`/`webp`/`image` column).
    #[arg(long)]
    image_column: Option<String>,
    /// Parquet shards: the id column (default: `image_url`, `key`, `url` or `id`, else
    /// `<shard>:<row>`).
    #[arg(long)]
    id_column: Option<String>,
}

impl InputArgs {
    fn options(&self) -> InputOptions {
        InputOptions {
            kind: self.input_kind.map(|k| match k {
                KindArg::Files => InputKind::Files,
                KindArg::Manifest => InputKind::Manifest,
                KindArg::Parquet => InputKind::Parquet,
                KindArg::Tar => InputKind::Tar,
            }),
            parquet: ParquetOptions {
                image_column: self.image_column.clone(),
                id_column: self.id_column.clone(),
            },
        }
    }
}

/// How images become the network input.
#[derive(clap::Args)]
struct PrepArgs {
    /// Square input side in pixels (default: the model's, e.g. 224 for Lite0).
    #[arg(long)]
    input_size: Option<u32>,
    /// `model`: the model's own policy (centre crop for the EfficientNets); `stretch`: the whole
    /// image resized to a square, the seed's preprocessing.
    #[arg(long, value_enum, default_value_t = ResizeArg::Model)]
    resize: ResizeArg,
    /// Images with more pixels are recorded as too-large instead of decoded.
    #[arg(long, default_value_t = image_input::decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain while the model's crop
    /// keeps at least this many times the input size in pixels (0: always decode full size).
    #[arg(long, default_value_t = job::DEFAULT_JPEG_DRAFT_MARGIN)]
    jpeg_draft_margin: f64,
}

impl PrepArgs {
    fn preparation(&self, manifest: &ModelManifest) -> Preparation {
        let size = self.input_size.unwrap_or(manifest.input.size);
        let resize = match self.resize {
            ResizeArg::Model => manifest.input.resize,
            ResizeArg::Stretch => ResizePolicy::Stretch,
        };
        Preparation::new(resize, size, self.max_pixels, self.jpeg_draft_margin)
    }
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// A directory of images (recursive; id = relative path), a manifest table (.csv, .tsv,
    /// .jsonl, .parquet with `id` and `path`), Parquet shards of image bytes (a file, a
    /// directory or a glob: WIT, img2dataset) or webdataset tar shards (a file, a directory,
    /// or a brace pattern `shards/{00000..00329}.tar`).
    input: String,
    #[command(flatten)]
    read: InputArgs,
    /// Model name (looked up in models/), or path to a model manifest (.json) or ONNX file.
    #[arg(long, short)]
    model: String,
    /// Cache directory to create or resume.
    #[arg(long, short)]
    out: PathBuf,
    /// Where inference runs; `auto` uses CUDA when available and says why not otherwise.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// Images per inference batch.
    #[arg(long, default_value_t = job::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Storage type of the embeddings.
    #[arg(long, value_enum, default_value_t = DtypeArg::F16)]
    dtype: DtypeArg,
    /// `avg`: global average pooling (C values); `flatten`: the last feature map flattened in
    /// h, w, C order (the seed's 2x2xC = 5120-d features with --input-size 64).
    #[arg(long, value_enum, default_value_t = PoolingArg::Avg)]
    pooling: PoolingArg,
    #[command(flatten)]
    prep: PrepArgs,
    /// Process only shard I of N (0-based), e.g. 3/16; default from a Slurm array's
    /// SLURM_ARRAY_TASK_ID/COUNT/MIN/STEP. Loose files are split by a hash of the id, Parquet
    /// shards by row group, tar shards by file.
    #[arg(long)]
    shard: Option<Shard>,
    /// Threads for decoding and CPU inference (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Images per Parquet part at most: the unit of atomic writes and of work lost on a crash.
    #[arg(long, default_value_t = job::DEFAULT_PART_SIZE)]
    part_size: usize,
    /// A trained head (run directory of `head-trainer`) to apply in the same pass: its
    /// predictions go to OUT/_heads/<run>/, part by part. Repeat for several heads.
    #[arg(long = "head")]
    heads: Vec<PathBuf>,
    /// Hide the progress bar (notes and the summary are still printed).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Any input `embed` takes.
    input: String,
    #[command(flatten)]
    read: InputArgs,
    /// Model whose input size and resize policy to use.
    #[arg(long, short, default_value = "efficientnet-lite0")]
    model: String,
    #[command(flatten)]
    prep: PrepArgs,
    /// Decoding threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Passes over the input.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// How far to take each image: `read` its bytes, `decode` them, or `prepare` the network
    /// input as `embed` does.
    #[arg(long, value_enum, default_value_t = StageArg::Prepare)]
    stage: StageArg,
    /// Decode whole JPEGs, not just the part the centre crop reads (to measure what partial
    /// decoding saves; the network input is the same either way).
    #[arg(long)]
    whole_images: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum StageArg {
    Read,
    Decode,
    Prepare,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Files,
    Manifest,
    Parquet,
    Tar,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    F16,
    F32,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Avg,
    Flatten,
}

#[derive(Clone, Copy, ValueEnum)]
enum ResizeArg {
    Model,
    Stretch,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { cache, json } => {
            let info = extractor::info::cache_info(&cache)?;
            if json {
                Ok(emit(&format!("{}\n", serde_json::to_string_pretty(&info)?))?)
            } else {
                Ok(emit(&format!("{info}\n"))?)
            }
        }
        Command::Migrate { cache } => {
            let bar = Bar::new(false);
            let done = extractor::migrate::migrate(&cache, &bar)
                .with_context(|| format!("migrating {}", cache.display()))?;
            bar.finish();
            Ok(emit(&format!(
                "{}: {} parts rewritten in format 2, {} failure tables moved to _failures/\n",
                cache.display(),
                done.parts.len(),
                done.failure_tables.len()
            ))?)
        }
        Command::BenchDecode(args) => bench(*args),
        Command::Embed(args) => embed(*args),
    }
}

fn bench(args: BenchArgs) -> Result<()> {
    let manifest = ModelManifest::resolve(&args.model)?;
    let mut prep = args.prep.preparation(&manifest);
    if args.whole_images {
        prep.decode.centre_crop = None;
    }
    let bar = Bar::new(args.quiet);
    let rate = extractor::bench::bench_decode(
        &args.input,
        &args.read.options(),
        prep,
        match args.stage {
            StageArg::Read => Stage::Read,
            StageArg::Decode => Stage::Decode,
            StageArg::Prepare => Stage::Prepare,
        },
        args.threads,
        args.repeat,
        &bar,
    )
    .with_context(|| format!("decoding {}", args.input))?;
    bar.finish();
    if args.json {
        return Ok(emit(&format!("{}\n", serde_json::to_string(&rate)?))?);
    }
    let done = match rate.stage {
        Stage::Read => "read",
        Stage::Decode => "decoded",
        Stage::Prepare => "prepared",
    };
    Ok(emit(&format!(
        "{done} {} images ({} failed) in {:.2}s on {} threads: {:.1} images/s, {:.1} images/s per thread\n",
        rate.images, rate.failed, rate.seconds, rate.threads, rate.images_per_s, rate.images_per_s_per_thread
    ))?)
}

fn embed(args: EmbedArgs) -> Result<()> {
    let shard = Shard::resolve(args.shard).map_err(anyhow::Error::msg)?;
    let manifest = ModelManifest::resolve(&args.model)?;
    let prep = args.prep.preparation(&manifest);
    let cfg = JobConfig {
        input: args.input.clone(),
        input_options: args.read.options(),
        model: args.model,
        out: args.out.clone(),
        device: args.device,
        batch_size: args.batch_size,
        dtype: match args.dtype {
            DtypeArg::F16 => EmbeddingDtype::F16,
            DtypeArg::F32 => EmbeddingDtype::F32,
        },
        pooling: match args.pooling {
            PoolingArg::Avg => Pooling::Avg,
            PoolingArg::Flatten => Pooling::Flatten,
        },
        input_size: Some(prep.size),
        resize: Some(prep.resize),
        shard,
        threads: args.threads,
        part_size: args.part_size,
        max_pixels: args.prep.max_pixels,
        jpeg_draft_margin: args.prep.jpeg_draft_margin,
        heads: args.heads.clone(),
    };
    let bar = Bar::new(args.quiet);
    let summary = job::run(&cfg, &bar).with_context(|| format!("embedding {}", args.input))?;
    bar.finish();
    let done = summary.embedded + summary.failed;
    let mut text = format!(
        "embedded {} images, {} failed, {} already done (shard {} of {} images) in {:.1}s, {:.1} images/s on {} -> {}\n",
        summary.embedded,
        summary.failed,
        summary.already_done,
        shard,
        summary.in_shard,
        summary.seconds,
        done as f64 / summary.seconds.max(1e-9),
        summary.device,
        args.out.display()
    );
    if summary.failed > 0 {
        text.push_str(&format!(
            "failures are listed in {}/_failures/ (see `extractor info`)\n",
            args.out.display()
        ));
    }
    Ok(emit(&text)?)
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::Parser;

    #[test]
    fn a_later_option_overrides_an_earlier_one() {
        // scripts/slurm/extract-array.sbatch passes --batch-size 256; a user's own comes after it.
        let cli = Cli::try_parse_from([
            "extractor",
            "embed",
            "in/",
            "--model",
            "m",
            "--out",
            "c",
            "--batch-size",
            "256",
            "--batch-size",
            "16",
        ])
        .expect("repeated options parse");
        match cli.command {
            Command::Embed(args) => assert_eq!(args.batch_size, 16),
            _ => panic!("parsed as another command"),
        }
    }
}
