//! A sweep's summary: one row per finished run — configuration, test metrics, training time —
//! written as `summary.csv`, `summary.jsonl`, `summary.json` and `summary.md`, with comparison
//! plots. Rows are read from each run's `metrics.json` as the type that wrote it, so a field
//! that went missing is an error, never a silent zero. Everything but `train_seconds` and
//! `fused_with` is a function of the runs' configurations alone.

use std::fmt::Write as _;
use std::path::Path;

use feature_cache::atomic::write_atomic;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::metrics::roc;
use crate::model::ModelKind;
use crate::plot::{write_chart, BarChart, LineChart, Series};
use crate::predictions::read_predictions;
use crate::run_dir::{write_json, RunMetrics, TrainingRecord, METRICS, PREDICTIONS, TRAINING};
use crate::sweep::SweepRun;

/// The files [`write_summary`] writes into a sweep's directory.
pub const SUMMARY_FILES: [&str; 8] = [
    "summary.csv",
    "summary.jsonl",
    "summary.json",
    "summary.md",
    "compare_auc.svg",
    "compare_auc.png",
    "compare_roc.svg",
    "compare_roc.png",
];

/// One line of the sweep summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Micro precision at F1-optimal thresholds.
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
    /// Training seconds (of the stack the run was trained in).
    pub train_seconds: f64,
    /// Runs trained together in that stack.
    pub fused_with: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
}

impl SummaryRow {
    /// The row of the finished run `r` in `dir`.
    pub fn read(dir: &Path, r: &SweepRun) -> Result<Self> {
        let m: RunMetrics = read_json(&dir.join(METRICS))?;
        // runs written before training.json: trained alone, time unknown
        let record: Option<TrainingRecord> =
            dir.join(TRAINING).exists().then(|| read_json(&dir.join(TRAINING))).transpose()?;
        let (loss, hidden) = match r.config.model {
            ModelKind::Mlp => (r.config.loss.to_string(), r.config.hidden),
            ModelKind::Linear => ("logistic".to_string(), 0),
        };
        let (mi, ma) = (&m.test.micro, &m.test.macro_);
        Ok(Self {
            run: r.name.clone(),
            embedding_model: m.embedding_model,
            column: r.config.labels.column.clone(),
            labels: m.test.labels.len(),
            classifier: r.config.model.to_string(),
            loss,
            hidden,
            test_images: m.test.images,
            micro_precision: mi.at_f1.precision,
            micro_recall: mi.at_f1.recall,
            micro_f1: mi.at_f1.f1,
            macro_precision: ma.at_f1.precision,
            macro_recall: ma.at_f1.recall,
            macro_f1: ma.at_f1.f1,
            micro_roc_auc: mi.roc_auc,
            macro_roc_auc: ma.roc_auc,
            micro_pr_auc: mi.pr_auc,
            macro_pr_auc: ma.pr_auc,
            labels_per_image: mi.at_f1.labels_per_image,
            true_labels_per_image: m.test.true_labels_per_image,
            train_seconds: record.as_ref().map_or(0.0, |r| r.train_seconds),
            fused_with: record.map_or(1, |r| r.fused_with.len()),
        })
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("".into(), |x| format!("{x:.4}"))
}

/// The summary table as Markdown (one line per run).
pub fn markdown_table(rows: &[SummaryRow]) -> String {
    let mut md = String::from(
        "| run | model | labels | micro P | micro R | micro F1 | macro F1 | micro ROC AUC | macro ROC AUC | macro PR AUC | labels/img (true) | train s |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
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
    md
}

/// Writes the summary files and comparison plots of `runs` (finished, in sweep order) into
/// `out`, each atomically.
pub fn write_summary(out: &Path, runs: &[SweepRun], rows: &[SummaryRow]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut jsonl = String::new();
    for r in rows {
        csv.serialize(r).map_err(|e| TrainError::Data(format!("summary.csv: {e}")))?;
        jsonl.push_str(&serde_json::to_string(r).map_err(|e| TrainError::Data(e.to_string()))?);
        jsonl.push('\n');
    }
    let csv = csv.into_inner().map_err(|e| TrainError::Data(format!("summary.csv: {e}")))?;
    write_atomic(out.join("summary.csv"), &csv)?;
    write_atomic(out.join("summary.jsonl"), jsonl.as_bytes())?;
    write_json(&out.join("summary.json"), &rows)?;
    let md = format!(
        "# Sweep summary\n\nMetrics on test; P/R/F1 at F1-optimal thresholds tuned on validation.\n\n{}\n\
         ![macro ROC AUC](compare_auc.png)\n\n![micro ROC](compare_roc.png)\n",
        markdown_table(rows)
    );
    write_atomic(out.join("summary.md"), md.as_bytes())?;
    let bars = BarChart {
        title: "Macro ROC AUC on test, per run".into(),
        x_label: "macro ROC AUC".into(),
        bars: rows.iter().map(|r| (r.run.clone(), r.macro_roc_auc.unwrap_or(0.0))).collect(),
    };
    write_chart(&bars.to_svg(), &out.join("compare_auc"))?;
    let mut series = Vec::new();
    for r in runs {
        let p = read_predictions(&out.join(&r.name).join(PREDICTIONS))?;
        if let Some((curve, auc)) = p.targets.as_ref().and_then(|y| roc(&p.probs, y)) {
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
