//! `extractor`: embed images once with a frozen EfficientNet and cache the embeddings as Parquet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use extractor::decode::{DecodeOptions, DEFAULT_MAX_PIXELS};
use extractor::embed::Device;
use extractor::job::{self, JobConfig, Shard};
use extractor::model::ResizePolicy;
use feature_cache::{EmbeddingDtype, Pooling};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Embed every image once with a frozen ImageNet EfficientNet (ONNX Runtime, CUDA or CPU) and
/// write the penultimate-layer embeddings to a Parquet feature cache for `head-trainer`.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = "\
Examples:
  extractor embed images/ --model efficientnet-lite0 --out cache/lite0
  extractor embed manifest.csv --model models/efficientnet-b0.json --out cache/b0 --device cuda --shard 3/16
  extractor embed images/ --model efficientnet-lite0 --pooling flatten --input-size 64 --out cache/seed64
  extractor info cache/lite0")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed the images of a directory or manifest (resumable: finished ids are skipped).
    Embed(EmbedArgs),
    /// Summarise a cache: rows, model, dim, failures by reason.
    Info {
        /// Cache directory (or one Parquet part).
        cache: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// A directory (recursive; id = relative path) or a .csv/.tsv/.jsonl/.parquet manifest with
    /// `id` and `path` columns.
    input: PathBuf,
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
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Storage type of the embeddings.
    #[arg(long, value_enum, default_value_t = DtypeArg::F16)]
    dtype: DtypeArg,
    /// `avg`: global average pooling (C values); `flatten`: the last feature map flattened in
    /// h, w, C order (the seed's 2x2xC = 5120-d features with --input-size 64).
    #[arg(long, value_enum, default_value_t = PoolingArg::Avg)]
    pooling: PoolingArg,
    /// Square input side in pixels (default: the model's, e.g. 224 for Lite0).
    #[arg(long)]
    input_size: Option<u32>,
    /// `model`: the model's own policy (centre crop for the EfficientNets); `stretch`: the whole
    /// image resized to a square, the seed's preprocessing.
    #[arg(long, value_enum, default_value_t = ResizeArg::Model)]
    resize: ResizeArg,
    /// Process only shard I of N (0-based), e.g. 3/16; default from SLURM_ARRAY_TASK_ID/COUNT.
    #[arg(long)]
    shard: Option<Shard>,
    /// Threads for decoding and CPU inference (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Images per Parquet part: the unit of atomic writes and of work lost on a crash.
    #[arg(long, default_value_t = 4096)]
    part_size: usize,
    /// Images with more pixels are recorded as too-large instead of decoded.
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain while the model's crop
    /// keeps at least this many times the input size in pixels (0: always decode full size).
    #[arg(long, default_value_t = job::DEFAULT_JPEG_DRAFT_MARGIN)]
    jpeg_draft_margin: f64,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
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
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
            }
            Ok(())
        }
        Command::Embed(args) => embed(args),
    }
}

fn embed(args: EmbedArgs) -> Result<()> {
    let shard = match args.shard {
        Some(s) => s,
        None => Shard::from_slurm_env()?.unwrap_or(Shard::ALL),
    };
    let cfg = JobConfig {
        input: args.input.clone(),
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
        input_size: args.input_size,
        resize: match args.resize {
            ResizeArg::Model => None,
            ResizeArg::Stretch => Some(ResizePolicy::Stretch),
        },
        shard,
        threads: args.threads,
        part_size: args.part_size,
        decode: DecodeOptions { max_pixels: args.max_pixels, ..DecodeOptions::default() },
        jpeg_draft_margin: args.jpeg_draft_margin,
    };
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if args.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} images  {per_sec}  ETA {eta}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let summary = job::run(&cfg, &bar, &|note| bar.suspend(|| eprintln!("note: {note}")))
        .with_context(|| format!("embedding {}", args.input.display()))?;
    bar.finish_and_clear();
    let done = summary.embedded + summary.failed;
    println!(
        "embedded {} images, {} failed, {} already done (shard {}/{} of {} images) in {:.1}s, {:.1} images/s on {} -> {}",
        summary.embedded,
        summary.failed,
        summary.already_done,
        shard.index,
        shard.count,
        summary.in_shard,
        summary.seconds,
        done as f64 / summary.seconds.max(1e-9),
        summary.device,
        args.out.display()
    );
    if summary.failed > 0 {
        println!("failures are listed in {}/failures-*.parquet (see `extractor info`)", args.out.display());
    }
    Ok(())
}
