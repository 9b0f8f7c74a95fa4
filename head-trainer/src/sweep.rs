//! Sweeps: many label configurations from one TOML file, trained fused where they share a cache
//! and batch plan, resumable, summarised side by side.
//!
//! ```toml
//! embeddings = "cache/lite0"       # default cache (relative paths: to the sweep file)
//! labels = "data/labels.csv"       # label table
//!
//! [defaults]                       # any run.toml field
//! hidden = 128
//! train = { epochs = 15, batch_size = 128 }
//!
//! [grid]                           # cartesian product of these ([[grids]] for several)
//! column = ["fine", "coarse"]
//! top_k = [10, 20]
//! loss = ["class-weighted", "bce"]
//! embeddings = ["cache/lite0", "cache/lite2"]
//!
//! [[run]]                          # explicit runs, on top of the grid
//! name = "maps-vs-flags"
//! column = "fine"
//! labels = ["Maps", "Flags"]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::config::{toml_error, RunConfig, RunOverrides};
use crate::data::Joined;
use crate::error::{Result, TrainError};
use crate::labels::EmptyPolicy;
use crate::metrics::roc;
use crate::model::{LossKind, ModelKind};
use crate::plot::{write_chart, BarChart, LineChart, Series};
use crate::report::{write_json, write_run};
use crate::run::{head_job, train_job, Inputs};
use crate::train::{train_fused, TrainedHead};

/// Grid axes: each a list of values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Caches.
    #[serde(default)]
    pub embeddings: Vec<PathBuf>,
    /// Label columns.
    #[serde(default)]
    pub column: Vec<String>,
    /// Top-K values.
    #[serde(default)]
    pub top_k: Vec<usize>,
    /// Label lists.
    #[serde(default)]
    pub labels: Vec<Vec<String>>,
    /// Classifiers (`mlp`, `linear`).
    #[serde(default)]
    pub model: Vec<ModelKind>,
    /// Losses.
    #[serde(default)]
    pub loss: Vec<LossKind>,
    /// Hidden sizes.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Seeds.
    #[serde(default)]
    pub seed: Vec<u64>,
    /// Empty-label policies.
    #[serde(default)]
    pub empty: Vec<EmptyPolicy>,
}

/// A sweep file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Default cache.
    #[serde(default)]
    pub embeddings: Option<PathBuf>,
    /// Label table.
    pub labels: PathBuf,
    /// Settings shared by every run (a partial run.toml).
    #[serde(default)]
    pub defaults: Option<toml::Table>,
    /// Cartesian grid.
    #[serde(default)]
    pub grid: Option<Grid>,
    /// More grids (`[[grids]]`), their runs added to the grid's.
    #[serde(default)]
    pub grids: Vec<Grid>,
    /// Explicit runs.
    #[serde(default)]
    pub run: Vec<RunOverrides>,
}

/// One expanded run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRun {
    /// Unique name (its directory under the sweep's output).
    pub name: String,
    /// Its cache.
    pub embeddings: PathBuf,
    /// Its configuration.
    pub config: RunConfig,
}

impl SweepFile {
    /// Reads a sweep file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        toml::from_str(&text).map_err(|e| TrainError::Config(toml_error(path, &text, &e)))
    }

    /// Expands the grid and explicit runs into named runs, paths resolved against `base`.
    pub fn expand(&self, path: &Path) -> Result<Vec<SweepRun>> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut defaults = self.defaults.clone().unwrap_or_default();
        // the label column usually varies per run: let [defaults] leave it out
        let labels = defaults.entry("labels").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = labels {
            t.entry("column").or_insert_with(|| "".into());
        }
        let defaults: RunConfig = defaults.try_into().map_err(|e: toml::de::Error| {
            TrainError::Config(format!("{}: [defaults]: {}", path.display(), e.message()))
        })?;
        let mut overrides = Vec::new();
        for g in self.grid.iter().chain(&self.grids) {
            overrides.extend(expand_grid(g));
        }
        overrides.extend(self.run.iter().cloned());
        if overrides.is_empty() {
            return Err(TrainError::Config(format!(
                "{}: no [grid] and no [[run]]: nothing to train",
                path.display()
            )));
        }
        let mut runs = Vec::with_capacity(overrides.len());
        let mut names = BTreeMap::new();
        for (i, o) in overrides.iter().enumerate() {
            let mut c = defaults.clone();
            let embeddings = o.embeddings.clone().or_else(|| self.embeddings.clone()).ok_or_else(|| {
                TrainError::Config(format!(
                    "{}: run {}: no `embeddings` (top level, grid or run)",
                    path.display(),
                    i + 1
                ))
            })?;
            o.apply_to(&mut c);
            if c.labels.column.is_empty() {
                return Err(TrainError::Config(format!(
                    "{}: run {}: no label `column` (set it in [defaults.labels], [grid] or the run)",
                    path.display(),
                    i + 1
                )));
            }
            if let Some(t) = &c.labels.taxonomy {
                c.labels.taxonomy = Some(base.join(t));
            }
            let name = o.name.clone().unwrap_or_else(|| auto_name(o, &c));
            if let Some(prev) = names.insert(name.clone(), i) {
                return Err(TrainError::Config(format!(
                    "{}: runs {} and {} are both named `{name}`",
                    path.display(),
                    prev + 1,
                    i + 1
                )));
            }
            runs.push(SweepRun { name, embeddings: base.join(embeddings), config: c });
        }
        Ok(runs)
    }
}

fn expand_grid(g: &Grid) -> Vec<RunOverrides> {
    let mut out = vec![RunOverrides::default()];
    fn axis<T: Clone>(
        out: Vec<RunOverrides>,
        values: &[T],
        set: impl Fn(&mut RunOverrides, T),
    ) -> Vec<RunOverrides> {
        if values.is_empty() {
            return out;
        }
        out.into_iter()
            .flat_map(|o| {
                values
                    .iter()
                    .map(|v| {
                        let mut o = o.clone();
                        set(&mut o, v.clone());
                        o
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
    out = axis(out, &g.embeddings, |o, v| o.embeddings = Some(v));
    out = axis(out, &g.column, |o, v| o.column = Some(v));
    out = axis(out, &g.top_k, |o, v| o.top_k = Some(v));
    out = axis(out, &g.labels, |o, v| o.labels = Some(v));
    out = axis(out, &g.model, |o, v| o.model = Some(v));
    out = axis(out, &g.loss, |o, v| o.loss = Some(v));
    out = axis(out, &g.hidden, |o, v| o.hidden = Some(v));
    out = axis(out, &g.seed, |o, v| o.seed = Some(v));
    axis(out, &g.empty, |o, v| o.empty = Some(v))
}

fn auto_name(o: &RunOverrides, c: &RunConfig) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &o.embeddings {
        parts.push(e.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
    parts.push(c.labels.column.clone());
    match (&c.labels.labels, c.labels.top_k) {
        (Some(l), _) => parts.push(format!("{}labels", l.len())),
        (None, Some(k)) => parts.push(format!("top{k}")),
        (None, None) => parts.push("all".into()),
    }
    if o.model.is_some() {
        parts.push(c.model.to_string());
    }
    if o.loss.is_some() {
        parts.push(c.loss.to_string());
    }
    if o.hidden.is_some() {
        parts.push(format!("h{}", c.hidden));
    }
    if o.seed.is_some() {
        parts.push(format!("seed{}", c.seed));
    }
    if o.empty.is_some() {
        parts.push(format!("{:?}", c.labels.empty).to_lowercase());
    }
    parts.join("-")
}

/// One line of the sweep summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Run name.
    pub run: String,
    /// Embedding model identity.
    pub embedding_model: String,
    /// Label column.
    pub column: String,
    /// Number of labels.
    pub labels: usize,
    /// Classifier: `mlp` or `linear`.
    pub classifier: String,
    /// Loss (`logistic` for the linear probe).
    pub loss: String,
    /// Hidden units (0 for the linear probe).
    pub hidden: usize,
    /// Test images.
    pub test_images: usize,
    /// Micro precision / recall / F1 at F1-optimal thresholds.
    pub micro_precision: f64,
    /// Micro recall.
    pub micro_recall: f64,
    /// Micro F1.
    pub micro_f1: f64,
    /// Macro precision.
    pub macro_precision: f64,
    /// Macro recall.
    pub macro_recall: f64,
    /// Macro F1.
    pub macro_f1: f64,
    /// Micro ROC AUC.
    pub micro_roc_auc: Option<f64>,
    /// Macro ROC AUC.
    pub macro_roc_auc: Option<f64>,
    /// Micro PR AUC.
    pub micro_pr_auc: Option<f64>,
    /// Macro PR AUC.
    pub macro_pr_auc: Option<f64>,
    /// Labels predicted per image (F1-optimal thresholds).
    pub labels_per_image: f64,
    /// True labels per image.
    pub true_labels_per_image: f64,
    /// Training seconds (of the fused group the run was trained in).
    pub train_seconds: f64,
    /// Runs trained together in that fused group.
    pub fused_with: usize,
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepOutcome {
    /// Runs trained now.
    pub trained: Vec<String>,
    /// Runs already finished and skipped.
    pub skipped: Vec<String>,
    /// Summary of all runs.
    pub rows: Vec<SummaryRow>,
}

/// Group key: runs sharing it are trained fused.
fn group_key(r: &SweepRun) -> String {
    let t = &r.config.train;
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        r.embeddings.display(),
        t.epochs,
        t.batch_size,
        t.learning_rate,
        t.seed,
        t.min_precision,
        r.config.split.val,
        r.config.split.test
    ) + &r.config.split.salt
}

/// Runs (or resumes) a sweep into `out`; `progress` is advanced per batch of each fused group.
/// With `shard = Some((i, n))` only runs whose index is `i` modulo `n` are trained (split a sweep
/// over nodes); the summary then covers the runs finished so far.
pub fn run_sweep(
    path: &Path,
    out: &Path,
    max_fused: usize,
    shard: Option<(usize, usize)>,
    memory_limit: Option<u64>,
    progress: &ProgressBar,
    log: &dyn Fn(&str),
) -> Result<SweepOutcome> {
    let file = SweepFile::load(path)?;
    let runs = file.expand(path)?;
    let labels_path = path.parent().unwrap_or(Path::new(".")).join(&file.labels);
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut outcome = SweepOutcome::default();
    let mut groups: BTreeMap<String, Vec<&SweepRun>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        if out.join(&r.name).join("metrics.json").exists() {
            outcome.skipped.push(r.name.clone());
        } else if shard.is_none_or(|(k, n)| i % n == k) {
            groups.entry(group_key(r)).or_default().push(r);
        }
    }
    for group in groups.values() {
        let embeddings = &group[0].embeddings;
        log(&format!("loading {} ({} runs to train on it)", embeddings.display(), group.len()));
        let inputs = Inputs::open(embeddings, &labels_path, memory_limit)?;
        // the group key includes the split, so one join serves every chunk of the group
        let joined = Joined::new(&inputs.features, &inputs.table, &group[0].config.split)?;
        let (mlp, linear): (Vec<&SweepRun>, Vec<&SweepRun>) =
            group.iter().partition(|r| r.config.model == ModelKind::Mlp);
        let job_of = |r: &SweepRun| {
            head_job(&r.name, &inputs, &joined, &r.config)
                .map_err(|e| TrainError::Config(format!("{}: run `{}`: {e}", path.display(), r.name)))
        };
        let mut write = |t: &TrainedHead, r: &SweepRun, fused_with: usize| -> Result<()> {
            let dir = write_run(&out.join(&r.name), t, &r.config, &inputs.features.meta, &joined.stats)?;
            let fused = dir.join(FUSED_FILE);
            std::fs::write(&fused, fused_with.to_string()).map_err(|e| TrainError::io(&fused, e))?;
            outcome.trained.push(r.name.clone());
            Ok(())
        };
        for chunk in mlp.chunks(max_fused.max(1)) {
            let jobs = chunk.iter().map(|r| job_of(r)).collect::<Result<Vec<_>>>()?;
            log(&format!(
                "training {} fused: {}",
                jobs.len(),
                chunk.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
            progress.reset();
            let trained = train_fused(&inputs.features, &joined, &jobs, &chunk[0].config.train, progress)?;
            for (t, r) in trained.iter().zip(chunk) {
                write(t, r, chunk.len())?;
            }
        }
        for r in linear {
            log(&format!("fitting linear probe: {}", r.name));
            progress.reset();
            let trained = train_job(&inputs, &joined, job_of(r)?, &r.config, progress)?;
            write(&trained, r, 1)?;
        }
    }
    let finished: Vec<SweepRun> =
        runs.iter().filter(|r| out.join(&r.name).join("metrics.json").exists()).cloned().collect();
    for r in &finished {
        outcome.rows.push(summary_row(&out.join(&r.name), r)?);
    }
    write_summary(out, &finished, &outcome.rows)?;
    Ok(outcome)
}

/// File in a run directory holding how many heads it was trained fused with.
const FUSED_FILE: &str = "fused.txt";

fn summary_row(dir: &Path, r: &SweepRun) -> Result<SummaryRow> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let f = |p: &str| m.pointer(p).and_then(serde_json::Value::as_f64);
    // 1 for a run trained alone (or by `train`, or before fused.txt was written)
    let fused_with =
        std::fs::read_to_string(dir.join(FUSED_FILE)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
    let (loss, hidden) = match r.config.model {
        ModelKind::Mlp => (r.config.loss.to_string(), r.config.hidden),
        ModelKind::Linear => ("logistic".to_string(), 0),
    };
    Ok(SummaryRow {
        run: r.name.clone(),
        embedding_model: m["embedding_model"].as_str().unwrap_or_default().to_string(),
        column: r.config.labels.column.clone(),
        labels: m.pointer("/test/labels").and_then(|v| v.as_array()).map_or(0, Vec::len),
        classifier: r.config.model.to_string(),
        loss,
        hidden,
        test_images: f("/test/images").unwrap_or(0.0) as usize,
        micro_precision: f("/test/micro/at_f1/precision").unwrap_or(0.0),
        micro_recall: f("/test/micro/at_f1/recall").unwrap_or(0.0),
        micro_f1: f("/test/micro/at_f1/f1").unwrap_or(0.0),
        macro_precision: f("/test/macro_/at_f1/precision").unwrap_or(0.0),
        macro_recall: f("/test/macro_/at_f1/recall").unwrap_or(0.0),
        macro_f1: f("/test/macro_/at_f1/f1").unwrap_or(0.0),
        micro_roc_auc: f("/test/micro/roc_auc"),
        macro_roc_auc: f("/test/macro_/roc_auc"),
        micro_pr_auc: f("/test/micro/pr_auc"),
        macro_pr_auc: f("/test/macro_/pr_auc"),
        labels_per_image: f("/test/micro/at_f1/labels_per_image").unwrap_or(0.0),
        true_labels_per_image: f("/test/true_labels_per_image").unwrap_or(0.0),
        train_seconds: f("/train_seconds").unwrap_or(0.0),
        fused_with,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map_or("".into(), |x| format!("{x:.4}"))
}

fn write_summary(out: &Path, runs: &[SweepRun], rows: &[SummaryRow]) -> Result<()> {
    use feature_cache::atomic::write_atomic;
    let mut csv = String::from(
        "run,embedding_model,column,labels,classifier,loss,hidden,test_images,micro_precision,micro_recall,micro_f1,macro_precision,macro_recall,macro_f1,micro_roc_auc,macro_roc_auc,micro_pr_auc,macro_pr_auc,labels_per_image,true_labels_per_image,train_seconds,fused_with\n",
    );
    let mut jsonl = String::new();
    let mut md = String::from("| run | model | labels | micro P | micro R | micro F1 | macro F1 | micro ROC AUC | macro ROC AUC | macro PR AUC | labels/img (true) | train s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{},{:.4},{:.4},{:.2},{}",
            r.run,
            r.embedding_model,
            r.column,
            r.labels,
            r.classifier,
            r.loss,
            r.hidden,
            r.test_images,
            r.micro_precision,
            r.micro_recall,
            r.micro_f1,
            r.macro_precision,
            r.macro_recall,
            r.macro_f1,
            opt(r.micro_roc_auc),
            opt(r.macro_roc_auc),
            opt(r.micro_pr_auc),
            opt(r.macro_pr_auc),
            r.labels_per_image,
            r.true_labels_per_image,
            r.train_seconds,
            r.fused_with
        );
        jsonl.push_str(&serde_json::to_string(r).map_err(|e| TrainError::Data(e.to_string()))?);
        jsonl.push('\n');
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {:.2} ({:.2}) | {:.1}{} |",
            r.run,
            r.embedding_model,
            r.labels,
            r.micro_precision,
            r.micro_recall,
            r.micro_f1,
            r.macro_f1,
            opt(r.micro_roc_auc),
            opt(r.macro_roc_auc),
            opt(r.macro_pr_auc),
            r.labels_per_image,
            r.true_labels_per_image,
            r.train_seconds,
            if r.fused_with > 1 { format!(" (x{} fused)", r.fused_with) } else { String::new() }
        );
    }
    write_atomic(out.join("summary.csv"), csv.as_bytes())?;
    write_atomic(out.join("summary.jsonl"), jsonl.as_bytes())?;
    write_atomic(
        out.join("summary.md"),
        format!("# Sweep summary\n\nMetrics on test; P/R/F1 at F1-optimal thresholds tuned on validation.\n\n{md}\n![macro ROC AUC](compare_auc.png)\n\n![micro ROC](compare_roc.png)\n").as_bytes(),
    )?;
    write_json(&out.join("summary.json"), &rows)?;
    let bars = BarChart {
        title: "Macro ROC AUC on test, per run".into(),
        x_label: "macro ROC AUC".into(),
        bars: rows.iter().map(|r| (r.run.clone(), r.macro_roc_auc.unwrap_or(0.0))).collect(),
    };
    write_chart(&bars.to_svg(), &out.join("compare_auc"))?;
    let mut series = Vec::new();
    for r in runs {
        if let Some((curve, auc)) = micro_roc_of(&out.join(&r.name).join("predictions.parquet"))? {
            series.push(Series {
                name: format!("{} ({auc:.3})", r.name),
                points: curve.x.into_iter().zip(curve.y).collect(),
                emphasised: false,
            });
        }
    }
    let chart = LineChart {
        title: "Micro-average ROC on test, per run".into(),
        x_label: "false positive rate".into(),
        y_label: "true positive rate".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        series,
        diagonal: true,
    };
    write_chart(&chart.to_svg(), &out.join("compare_roc"))
}

/// Micro ROC of a run from its predictions table (`p:` and `y:` columns).
fn micro_roc_of(path: &Path) -> Result<Option<(crate::metrics::Curve, f64)>> {
    use arrow_array::{Array, BooleanArray, Float32Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let (mut p, mut y) = (Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
        let schema = batch.schema();
        for (i, f) in schema.fields().iter().enumerate() {
            let Some(label) = f.name().strip_prefix("p:") else { continue };
            let (Some(pc), Some(yc)) = (
                batch.column(i).as_any().downcast_ref::<Float32Array>(),
                batch
                    .column_by_name(&format!("y:{label}"))
                    .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned()),
            ) else {
                continue;
            };
            p.extend(pc.values().iter().copied());
            y.extend((0..yc.len()).map(|k| yc.value(k)));
        }
    }
    Ok(roc(&p, &y))
}
