//! `head-trainer`: train topic heads on cached embeddings, evaluate, report, predict.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use feature_cache::Shard;
use head_trainer::config::{RunConfig, RunOverrides};
use head_trainer::gallery::{GalleryOptions, ImageSources, DEFAULT_PER_LABEL};
use head_trainer::labels::EmptyPolicy;
use head_trainer::model::{LossKind, ModelKind};
use head_trainer::run::{predict, rebuild_gallery, train_one, Inputs, TrainOptions};
use head_trainer::summary::markdown_table;
use head_trainer::sweep::{run_sweep, SweepOptions};
use terminal::{emit, Bar};

/// Train a Dense(128, ReLU) + Dense(M, sigmoid) topic head on embeddings cached by `extractor`,
/// evaluate it (per-label precision, recall, ROC/PR AUC, micro/macro averages) and write a run
/// directory with metrics.json, report.md, ROC/PR/training plots, head weights and predictions.
#[derive(Parser)]
#[command(version, about, long_about = None, args_override_self = true, after_help = "\
Examples:
  head-trainer train --embeddings cache/lite0 --labels labels.csv --column fine --top-k 10 --out runs/fine10
  head-trainer train --embeddings cache/lite0 --labels labels.csv --config run.toml --out runs/custom
  head-trainer train --embeddings cache/lite0 --labels labels.csv --column fine --model linear --out runs/probe
  head-trainer sweep sweeps/seed-grid.toml --out runs/grid
  head-trainer predict --head runs/fine10 --embeddings cache/new --out predictions.parquet
  head-trainer export runs/fine10 --backbone efficientnet-lite0 --out topics.onnx
  head-trainer report runs/fine10 --images images/      # the gallery, for caches without image origins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train and evaluate one head; writes a run directory.
    Train(Box<TrainArgs>),
    /// Train many label configurations from a sweep file (fused where they share a cache and
    /// batch plan; finished runs are skipped) and write summary.md/.csv/.jsonl with comparison plots.
    Sweep {
        /// Sweep file (TOML: embeddings, labels, [defaults], [grid], [[run]]).
        sweep: PathBuf,
        /// Output directory: one run directory per configuration plus the summaries.
        #[arg(long, short)]
        out: PathBuf,
        /// At most this many heads are trained together in one fused stack.
        #[arg(long, default_value_t = 16)]
        max_fused: usize,
        /// Train only runs I, I+N, I+2N… of the sweep (0-based I/N), e.g. one Slurm array task per
        /// node; default from a Slurm array's SLURM_ARRAY_TASK_ID/COUNT/MIN/STEP. A final run
        /// without shards skips every finished run and writes the complete summary.
        #[arg(long)]
        shard: Option<Shard>,
        /// Most memory the embeddings may take (e.g. 4G, 512M); bigger caches are streamed
        /// from their Parquet row groups.
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<u64>,
        #[command(flatten)]
        gallery: GalleryArgs,
        /// Hide the progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Apply a trained head to a cache of embeddings of the same model.
    Predict {
        /// Run directory written by `train`.
        #[arg(long)]
        head: PathBuf,
        /// Cache directory (must come from the head's embedding model).
        #[arg(long)]
        embeddings: PathBuf,
        /// Output Parquet: `id` and one `p:<label>` column per label.
        #[arg(long, short)]
        out: PathBuf,
        /// Hide the progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Export a run's head as one ONNX model: alone (embedding -> probabilities), or with the
    /// backbone it was trained on (uint8 pixels -> probabilities and embedding), labels and
    /// thresholds in its metadata.
    Export {
        /// Run directory written by `train` or `sweep`.
        run: PathBuf,
        /// The ONNX file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// The backbone (model name or manifest, as `extractor --model` takes) to put in front.
        #[arg(long)]
        backbone: Option<String>,
    },
    /// (Re)build the error gallery (report.html and its thumbnails) of a finished run.
    Report {
        /// Run directory written by `train` or `sweep`.
        run: PathBuf,
        #[command(flatten)]
        gallery: GalleryArgs,
        /// Hide the progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// The error gallery of a run.
#[derive(clap::Args)]
struct GalleryArgs {
    /// Images per label in each of the gallery's rows (surest hits, top false positives, worst
    /// misses); 0: no gallery.
    #[arg(long, default_value_t = DEFAULT_PER_LABEL)]
    gallery: usize,
    /// Where the images are, for caches that recorded no image origins (written before cache
    /// format 2): any input `extractor embed` takes. Default: the origins in the cache.
    #[arg(long)]
    images: Option<String>,
}

impl GalleryArgs {
    fn options(&self, cache: &std::path::Path) -> GalleryOptions {
        GalleryOptions {
            per_label: self.gallery,
            thumbnail_px: 160,
            images: match &self.images {
                Some(input) => ImageSources::Input { input: input.clone(), options: Default::default() },
                None => ImageSources::Cache(cache.to_path_buf()),
            },
        }
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Cache directory written by `extractor embed`.
    #[arg(long)]
    embeddings: PathBuf,
    /// Label table (.csv/.tsv/.jsonl/.parquet) with `id` and label columns.
    #[arg(long)]
    labels: PathBuf,
    /// Run directory to write (refused if it exists, unless --overwrite).
    #[arg(long, short)]
    out: PathBuf,
    /// Replace an existing run directory (once the new one is complete).
    #[arg(long)]
    overwrite: bool,
    /// TOML run configuration; the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Label column to predict (e.g. `fine`, `coarse`, `ores`).
    #[arg(long)]
    column: Option<String>,
    /// Keep the K most frequent labels.
    #[arg(long)]
    top_k: Option<usize>,
    /// Keep exactly these labels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    labels_list: Option<Vec<String>>,
    /// Drop labels with fewer training images.
    #[arg(long)]
    min_count: Option<usize>,
    /// Taxonomy file (child -> parents) for ancestor expansion.
    #[arg(long)]
    taxonomy: Option<PathBuf>,
    /// Images left without labels: `drop` (the seed's choice) or `negative`.
    #[arg(long)]
    empty: Option<EmptyPolicy>,
    /// Classifier: `mlp` (Dense(H, ReLU) + Dense(M, sigmoid), the default) or `linear` (the
    /// linear-probe baseline: linfa logistic regression per label).
    #[arg(long)]
    model: Option<ModelKind>,
    /// Loss: bce, class-weighted (the seed's), pos-weight, focal (MLP only).
    #[arg(long)]
    loss: Option<LossKind>,
    /// Hidden units.
    #[arg(long)]
    hidden: Option<usize>,
    /// Epochs (the best by validation macro PR AUC is kept).
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    learning_rate: Option<f32>,
    /// Seed of initial weights and batch order.
    #[arg(long)]
    seed: Option<u64>,
    /// L2 penalty of the linear probe (scikit-learn's C = 1/alpha).
    #[arg(long)]
    probe_alpha: Option<f32>,
    /// L-BFGS iterations per label of the linear probe, at most.
    #[arg(long)]
    probe_max_iterations: Option<u64>,
    /// Precision target of the ORES-style max-recall threshold.
    #[arg(long)]
    min_precision: Option<f64>,
    /// Most memory the embeddings may take (e.g. 4G, 512M, 1.5GiB). A cache that does not fit is
    /// streamed from its Parquet row groups, at most this much at a time; each epoch then shuffles
    /// row groups and the rows within each buffer (a block shuffle) instead of all rows.
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<u64>,
    #[command(flatten)]
    gallery: GalleryArgs,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reading Parquet allocates and frees tens of MiB per row group; glibc serves such blocks with
/// fresh mmaps by default, so every row group pays page faults and zeroing again (half the
/// time of a streamed epoch, measured). Keeping freed memory in the heap for reuse avoids that.
/// One heap for every thread: training runs on a pool thread, and with glibc's per-thread
/// arenas the row groups it reads were held apart from the rest (peak RSS of a streamed run at
/// 200k rows, `--memory-limit 96M`: 467 MiB with them, 356 MiB without).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn build_config(a: &TrainArgs) -> Result<RunConfig> {
    let mut c = match &a.config {
        Some(p) => RunConfig::load(p)?,
        None => RunConfig::for_column(a.column.as_deref().context("--column (or --config) is required")?),
    };
    RunOverrides {
        column: a.column.clone(),
        top_k: a.top_k,
        labels: a.labels_list.clone(),
        min_count: a.min_count,
        taxonomy: a.taxonomy.clone(),
        empty: a.empty,
        model: a.model,
        loss: a.loss,
        hidden: a.hidden,
        seed: a.seed,
        ..RunOverrides::default()
    }
    .apply_to(&mut c);
    if let Some(v) = a.epochs {
        c.train.epochs = v;
    }
    if let Some(v) = a.batch_size {
        c.train.batch_size = v;
    }
    if let Some(v) = a.learning_rate {
        c.train.learning_rate = v;
    }
    if c.model != ModelKind::Linear && (a.probe_alpha.is_some() || a.probe_max_iterations.is_some()) {
        anyhow::bail!("--probe-alpha and --probe-max-iterations set the linear probe: add --model linear");
    }
    if let Some(v) = a.probe_alpha {
        c.probe.alpha = v;
    }
    if let Some(v) = a.probe_max_iterations {
        c.probe.max_iterations = v;
    }
    if let Some(v) = a.min_precision {
        c.train.min_precision = v;
    }
    let c = c.normalized();
    c.validate()?;
    Ok(c)
}

/// A byte size: a number with an optional K/M/G/T suffix (powers of 1024; `KiB`, `MB`… accepted).
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a size (e.g. 4G, 512M)"))?;
    let scale = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1u64,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use K, M, G or T)")),
    };
    if !(number.is_finite() && number > 0.0) {
        return Err(format!("`{text}`: a size must be positive"));
    }
    Ok((number * scale as f64) as u64)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let config = build_config(&args)?;
            let bar = Bar::new(args.quiet);
            let inputs =
                Inputs::open(&args.embeddings, &args.labels, args.memory_limit).with_context(|| {
                    format!("loading {} and {}", args.embeddings.display(), args.labels.display())
                })?;
            let options = TrainOptions {
                overwrite: args.overwrite,
                gallery: Some(args.gallery.options(&args.embeddings)),
            };
            let outcome = train_one(&inputs, &config, &args.out, &options, &bar)?;
            bar.finish();
            let t = &outcome.trained;
            let (mi, ma) = (&t.test.micro, &t.test.macro_);
            let fitted = match t.history.len() {
                0 => "linear probe".to_string(),
                _ => format!("best epoch {}", t.best_epoch),
            };
            Ok(emit(&format!(
                "{}: {} labels, {fitted}, test micro ROC AUC {:.3}, macro ROC AUC {:.3}, micro F1 {:.3}, macro F1 {:.3} ({:.1}s) -> {}/report.md\n",
                t.name,
                t.labels.len(),
                mi.roc_auc.unwrap_or(f64::NAN),
                ma.roc_auc.unwrap_or(f64::NAN),
                mi.at_f1.f1,
                ma.at_f1.f1,
                t.seconds,
                outcome.dir.display()
            ))?)
        }
        Command::Sweep { sweep, out, max_fused, shard, memory_limit, gallery, quiet } => {
            let shard = match shard {
                Some(s) => Some(s),
                None => Shard::from_env(&|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?,
            };
            let bar = Bar::new(quiet);
            let images = gallery.images.clone().map(|input| (input, Default::default()));
            let options = SweepOptions { max_fused, shard, memory_limit, gallery: gallery.gallery, images };
            let outcome = run_sweep(&sweep, &out, options, &bar)
                .with_context(|| format!("sweep {}", sweep.display()))?;
            bar.finish();
            let summary = match shard {
                None => format!("summary: {}/summary.md", out.display()),
                Some(s) => format!("shard {s}: a final run without --shard writes the summary"),
            };
            Ok(emit(&format!(
                "{} runs trained, {} already finished; {summary}\n{}",
                outcome.trained.len(),
                outcome.skipped.len(),
                markdown_table(&outcome.rows)
            ))?)
        }
        Command::Export { run, out, backbone } => {
            let e = head_trainer::export::export(&run, backbone.as_deref(), &out)
                .with_context(|| format!("exporting {}", run.display()))?;
            Ok(emit(&format!(
                "wrote {} ({:.1} MiB): inputs {}, outputs {}\n",
                out.display(),
                e.bytes as f64 / 1048576.0,
                e.inputs.join(", "),
                e.outputs.join(", ")
            ))?)
        }
        Command::Report { run, gallery, quiet } => {
            let bar = Bar::new(quiet);
            let info = head_trainer::head_io::HeadInfo::load(&run)?;
            let cache = info.inputs.map(|i| i.embeddings).unwrap_or_default();
            let n = rebuild_gallery(&run, &gallery.options(&cache), &bar)?;
            bar.finish();
            Ok(emit(&format!("{}/report.html: {n} thumbnails\n", run.display()))?)
        }
        Command::Predict { head, embeddings, out, quiet } => {
            let bar = Bar::new(quiet);
            let n = predict(&head, &embeddings, &out, &bar)?;
            bar.finish();
            Ok(emit(&format!("wrote {n} predictions to {}\n", out.display()))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_size, Cli, Command};
    use clap::Parser;

    #[test]
    fn a_later_option_overrides_an_earlier_one() {
        // The Slurm templates pass their own options first and the user's after them.
        let cli =
            Cli::try_parse_from(["head-trainer", "sweep", "s.toml", "--out", "a", "--quiet", "--out", "b"])
                .expect("repeated options parse");
        match cli.command {
            Command::Sweep { out, .. } => assert_eq!(out, std::path::Path::new("b")),
            _ => panic!("parsed as another command"),
        }
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("64kb"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0G").unwrap_err().contains("positive"));
        assert!(parse_size("4X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
    }
}
