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
use crate::plot::{write_chart, Bar, BarChart, HeatCell, Heatmap, Line, LineChart};
use crate::predictions::read_predictions;
use crate::run_dir::{write_json, RunMetrics, TrainingRecord, METRICS, PREDICTIONS, TRAINING};
use crate::sweep::SweepRun;

/// The files [`write_summary`] writes into a sweep's directory.
pub const SUMMARY_FILES: [&str; 14] = [
    "summary.csv",
    "summary.jsonl",
    "summary.json",
    "summary.md",
    "compare_auc.svg",
    "compare_auc.png",
    "compare_roc.svg",
    "compare_roc.png",
    "label_matrix.csv",
    "label_matrix.md",
    "label_matrix_pr_auc.svg",
    "label_matrix_pr_auc.png",
    "label_matrix_roc_auc.svg",
    "label_matrix_roc_auc.png",
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
    /// Loss (`bce` for the linear probe: its unweighted logistic loss).
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
        let (loss, hidden) = (r.config.loss.to_string(), r.config.hidden);
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

fn opt_md(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.4}"))
}

/// The summary table as Markdown (one line per run, with a link to its report when
/// `with_links`).
pub fn markdown_table(rows: &[SummaryRow]) -> String {
    table(rows, false)
}

fn table(rows: &[SummaryRow], with_links: bool) -> String {
    let mut md = String::from(
        "| run | model | labels | test images | micro P | micro R | micro F1 | macro F1 | micro ROC AUC | macro ROC AUC | macro PR AUC | labels/img (true) | train s |",
    );
    md.push_str(if with_links { " report |\n" } else { "\n" });
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    md.push_str(if with_links { "---|\n" } else { "\n" });
    for r in rows {
        let _ = write!(
            md,
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {:.2} ({:.2}) | {:.1}{} |",
            r.run,
            r.embedding_model,
            r.labels,
            r.test_images,
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
        if with_links {
            let _ = write!(md, " [report]({}/report.html) |", r.run);
        }
        md.push('\n');
    }
    md
}

/// One label of one run in the label x run matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelCell {
    /// ROC AUC on test.
    pub roc_auc: Option<f64>,
    /// PR AUC (average precision) on test.
    pub pr_auc: Option<f64>,
    /// F1 at the F1-optimal threshold tuned on validation.
    pub f1: f64,
    /// Positives in test.
    pub support: usize,
}

/// Every label of every run side by side: rows are labels (in order of first appearance),
/// columns runs; a label a run does not predict has no cell.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMatrix {
    /// Labels.
    pub labels: Vec<String>,
    /// Runs.
    pub runs: Vec<String>,
    /// Row-major `labels x runs`.
    pub cells: Vec<Option<LabelCell>>,
}

impl LabelMatrix {
    /// The matrix of the finished runs `runs` in `out`.
    pub fn read(out: &Path, runs: &[SweepRun]) -> Result<Self> {
        let mut labels: Vec<String> = Vec::new();
        let mut per_run = Vec::new();
        for r in runs {
            let m: RunMetrics = read_json(&out.join(&r.name).join(METRICS))?;
            for l in &m.test.labels {
                if !labels.contains(&l.label) {
                    labels.push(l.label.clone());
                }
            }
            per_run.push(m.test.labels);
        }
        let mut cells = Vec::with_capacity(labels.len() * runs.len());
        for label in &labels {
            for run in &per_run {
                cells.push(run.iter().find(|l| &l.label == label).map(|l| LabelCell {
                    roc_auc: l.roc_auc,
                    pr_auc: l.pr_auc,
                    f1: l.at_f1.f1,
                    support: l.support,
                }));
            }
        }
        Ok(Self { labels, runs: runs.iter().map(|r| r.name.clone()).collect(), cells })
    }

    fn cell(&self, label: usize, run: usize) -> Option<&LabelCell> {
        self.cells[label * self.runs.len() + run].as_ref()
    }

    /// Wide CSV: `label`, then `<run>:roc_auc`, `<run>:pr_auc`, `<run>:f1`, `<run>:support` per
    /// run; empty where a run has no such label (or the metric is undefined).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["label".to_string()];
        for r in &self.runs {
            header.extend(["roc_auc", "pr_auc", "f1", "support"].iter().map(|m| format!("{r}:{m}")));
        }
        w.write_record(&header).map_err(|e| TrainError::Data(format!("label_matrix.csv: {e}")))?;
        for (i, label) in self.labels.iter().enumerate() {
            let mut record = vec![label.clone()];
            for j in 0..self.runs.len() {
                match self.cell(i, j) {
                    Some(c) => record.extend([
                        opt(c.roc_auc),
                        opt(c.pr_auc),
                        format!("{:.4}", c.f1),
                        c.support.to_string(),
                    ]),
                    None => record.extend(std::iter::repeat_n(String::new(), 4)),
                }
            }
            w.write_record(&record).map_err(|e| TrainError::Data(format!("label_matrix.csv: {e}")))?;
        }
        w.into_inner().map_err(|e| TrainError::Data(format!("label_matrix.csv: {e}")))
    }

    /// One Markdown table per metric, labels down, runs across: `—` where a run has no such
    /// label, `n/a` where the metric is undefined (no positive or no negative in test).
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        type Show = fn(&LabelCell) -> String;
        let metrics: [(&str, Show); 4] = [
            ("ROC AUC", |c| opt_md(c.roc_auc)),
            ("PR AUC", |c| opt_md(c.pr_auc)),
            ("F1 at the tuned threshold", |c| format!("{:.3}", c.f1)),
            ("support (test positives)", |c| c.support.to_string()),
        ];
        for (name, value) in metrics {
            let _ = writeln!(md, "### {name}\n\n| label | {} |", self.runs.join(" | "));
            let _ = writeln!(md, "|---|{}", "---:|".repeat(self.runs.len()));
            for (i, label) in self.labels.iter().enumerate() {
                let cells: Vec<String> =
                    (0..self.runs.len()).map(|j| self.cell(i, j).map_or("—".to_string(), value)).collect();
                let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
            }
            md.push('\n');
        }
        md
    }

    /// The heatmap of one metric.
    fn heatmap(&self, title: &str, metric: fn(&LabelCell) -> Option<f64>) -> Heatmap {
        Heatmap {
            title: title.to_string(),
            rows: self.labels.clone(),
            columns: self.runs.clone(),
            cells: self
                .cells
                .iter()
                .map(|c| match c.as_ref().map(metric) {
                    Some(Some(v)) => HeatCell::Value(v),
                    Some(None) => HeatCell::Undefined,
                    None => HeatCell::Missing,
                })
                .collect(),
        }
    }
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
    let matrix = LabelMatrix::read(out, runs)?;
    write_atomic(out.join("label_matrix.csv"), &matrix.to_csv()?)?;
    let matrix_md = matrix.to_markdown();
    write_atomic(out.join("label_matrix.md"), format!("# Labels x runs (test)\n\n{matrix_md}").as_bytes())?;
    write_chart(
        &matrix.heatmap("PR AUC on test, label x run", |c| c.pr_auc).to_svg()?,
        &out.join("label_matrix_pr_auc"),
    )?;
    write_chart(
        &matrix.heatmap("ROC AUC on test, label x run", |c| c.roc_auc).to_svg()?,
        &out.join("label_matrix_roc_auc"),
    )?;
    let md = format!(
        "# Sweep summary\n\nMetrics on test; P/R/F1 at F1-optimal thresholds tuned on validation. Each run's \
         report.html shows its best and worst images per label.\n\n{}\n![macro ROC AUC](compare_auc.png)\n\n\
         ![micro ROC](compare_roc.png)\n\n## Labels x runs\n\nA dash: the run does not predict that label. \
         The same as CSV: label_matrix.csv.\n\n![PR AUC per label and run](label_matrix_pr_auc.png)\n\n{matrix_md}",
        table(rows, true)
    );
    write_atomic(out.join("summary.md"), md.as_bytes())?;
    write_chart(&compare_auc(runs, rows).to_svg()?, &out.join("compare_auc"))?;
    let mut lines = Vec::new();
    for r in runs {
        let p = read_predictions(&out.join(&r.name).join(PREDICTIONS))?;
        if let Some((curve, auc)) = p.targets.as_ref().and_then(|y| roc(&p.probs, y)) {
            lines.push(Line {
                name: format!("{} (AUC {auc:.3})", r.name),
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
        lines,
        diagonal: true,
        baseline: None,
    };
    write_chart(&chart.to_svg()?, &out.join("compare_roc"))
}

/// Macro ROC AUC per run, coloured by what it was evaluated on: runs of one colour share their
/// labels and test images; across colours the numbers do not compare like for like.
fn compare_auc(runs: &[SweepRun], rows: &[SummaryRow]) -> BarChart {
    let mut keys: Vec<(String, usize, usize)> = Vec::new();
    let bars: Vec<Bar> = runs
        .iter()
        .zip(rows)
        .map(|(r, row)| {
            let key = (r.config.labels.column.clone(), row.labels, row.test_images);
            let group = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            });
            Bar {
                label: row.run.clone(),
                value: row.macro_roc_auc.unwrap_or(0.0),
                note: format!(
                    "  ({} labels of `{}`, {} test images)",
                    row.labels, r.config.labels.column, row.test_images
                ),
                group,
            }
        })
        .collect();
    let groups_note = (keys.len() > 1).then(|| {
        format!(
            "{} colours: runs evaluated on different labels or test images. Compare AUCs within a colour.",
            keys.len()
        )
    });
    BarChart {
        title: "Macro ROC AUC on test, per run".into(),
        x_label: "macro ROC AUC".into(),
        bars,
        from_zero: false,
        groups_note,
    }
}
