//! The run directory of a trained head: metrics, report, plots, weights, predictions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use feature_cache::atomic::{write_atomic, AtomicFile};
use feature_cache::CacheMetadata;
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::data::JoinStats;
use crate::error::{Result, TrainError};
use crate::evaluate::{AtThreshold, Thresholds};
use crate::model::{Classifier, Head, HeadShape, LinearProbe, ModelKind};
use crate::plot::{write_chart, BarChart, LineChart, Series};
use crate::train::TrainedHead;

/// `head.json`: what `predict` needs besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Run name.
    pub name: String,
    /// Label names in output order.
    pub labels: Vec<String>,
    /// Thresholds tuned on validation.
    pub thresholds: Thresholds,
    /// The run's configuration.
    pub config: RunConfig,
    /// Identity of the embeddings it was trained on.
    pub embedding: CacheMetadata,
    /// Classifier kind (`mlp` for heads written before the linear probe existed).
    #[serde(default)]
    pub model: ModelKind,
    /// Shape (hidden 0 for the linear probe).
    pub shape: HeadShape,
    /// Best epoch.
    pub best_epoch: usize,
    /// Version of the tool that trained it.
    pub tool_version: String,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| TrainError::io(path, e))
}

/// Writes `head.safetensors`, float32: the MLP as `w1` (D x H), `b1`, `w2` (H x M), `b2`; the
/// linear probe as `w` (D x M), `b`.
pub fn save_head(head: &Classifier, path: &Path) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = match head {
        Classifier::Mlp(h) => {
            let (d, hd, m) = (h.dim, h.shape.hidden, h.shape.outputs);
            vec![
                ("w1", vec![d, hd], bytes(&h.w1)),
                ("b1", vec![hd], bytes(&h.b1)),
                ("w2", vec![hd, m], bytes(&h.w2)),
                ("b2", vec![m], bytes(&h.b2)),
            ]
        }
        Classifier::Linear(l) => {
            vec![("w", vec![l.dim, l.outputs], bytes(&l.w)), ("b", vec![l.outputs], bytes(&l.b))]
        }
    };
    let mut views = Vec::new();
    for (name, shape, buf) in &tensors {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), buf).map_err(|e| TrainError::Data(e.to_string()))?;
        views.push((name.to_string(), view));
    }
    let out = safetensors::serialize(views, None).map_err(|e| TrainError::Data(e.to_string()))?;
    write_atomic(path, &out)?;
    Ok(())
}

/// Reads a classifier written by [`save_head`].
pub fn load_head(path: &Path, kind: ModelKind) -> Result<Classifier> {
    let bytes = io(path, std::fs::read(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| TrainError::Mismatch(format!("{}: {e}", path.display())))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|e| TrainError::Mismatch(format!("{}: tensor {name}: {e}", path.display())))?;
        let v = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((t.shape().to_vec(), v))
    };
    let inconsistent = || TrainError::Mismatch(format!("{}: inconsistent tensor shapes", path.display()));
    match kind {
        ModelKind::Mlp => {
            let (s1, w1) = get("w1")?;
            let (_, b1) = get("b1")?;
            let (s2, w2) = get("w2")?;
            let (_, b2) = get("b2")?;
            if s1.len() != 2 || s2.len() != 2 || s1[1] != s2[0] {
                return Err(inconsistent());
            }
            let shape = HeadShape { hidden: s1[1], outputs: s2[1] };
            Ok(Classifier::Mlp(Head { dim: s1[0], shape, w1, b1, w2, b2 }))
        }
        ModelKind::Linear => {
            let (s, w) = get("w")?;
            let (sb, b) = get("b")?;
            if s.len() != 2 || sb != [s[1]] {
                return Err(inconsistent());
            }
            Ok(Classifier::Linear(LinearProbe { dim: s[0], outputs: s[1], w, b }))
        }
    }
}

/// Writes a predictions table: `id`, `p:<label>` (Float32) and, where targets are given,
/// `y:<label>` (Boolean).
pub fn write_predictions(
    path: &Path,
    ids: &[String],
    labels: &[String],
    probs: &[f32],
    targets: Option<&[bool]>,
) -> Result<()> {
    let m = labels.len();
    let mut fields = vec![Field::new("id", DataType::Utf8, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(ids))];
    for (j, l) in labels.iter().enumerate() {
        fields.push(Field::new(format!("p:{l}"), DataType::Float32, false));
        cols.push(Arc::new(Float32Array::from_iter_values(probs.iter().skip(j).step_by(m).copied())));
    }
    if let Some(y) = targets {
        for (j, l) in labels.iter().enumerate() {
            fields.push(Field::new(format!("y:{l}"), DataType::Boolean, false));
            cols.push(Arc::new(BooleanArray::from(
                y.iter().skip(j).step_by(m).copied().collect::<Vec<bool>>(),
            )));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| TrainError::Data(e.to_string()))?;
    let file = AtomicFile::create(path)?;
    let mut w = ArrowWriter::try_new(file.try_clone()?, schema, None)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    w.write(&batch).map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    w.close().map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    file.commit()?;
    Ok(())
}

/// `metrics.json`.
#[derive(Debug, Serialize)]
struct MetricsFile<'a> {
    run: &'a str,
    embedding_model: String,
    join: &'a JoinStats,
    train_rows: usize,
    best_epoch: usize,
    train_seconds: f64,
    history: &'a [crate::train::EpochLog],
    thresholds: &'a Thresholds,
    test: &'a crate::evaluate::Evaluation,
}

/// Writes every artefact of a trained head into `dir` (created if needed); returns `dir`.
pub fn write_run(
    dir: &Path,
    trained: &TrainedHead,
    config: &RunConfig,
    embedding: &CacheMetadata,
    join: &JoinStats,
) -> Result<PathBuf> {
    io(dir, std::fs::create_dir_all(dir))?;
    save_head(&trained.head, &dir.join("head.safetensors"))?;
    let info = HeadInfo {
        name: trained.name.clone(),
        labels: trained.labels.clone(),
        thresholds: trained.thresholds.clone(),
        config: config.clone(),
        embedding: embedding.clone(),
        model: trained.head.kind(),
        shape: trained.head.shape(),
        best_epoch: trained.best_epoch,
        tool_version: format!("head-trainer {}", env!("CARGO_PKG_VERSION")),
    };
    write_json(&dir.join("head.json"), &info)?;
    let metrics = MetricsFile {
        run: &trained.name,
        embedding_model: embedding.model_identity(),
        join,
        train_rows: trained.train_rows,
        best_epoch: trained.best_epoch,
        train_seconds: trained.seconds,
        history: &trained.history,
        thresholds: &trained.thresholds,
        test: &trained.test,
    };
    write_json(&dir.join("metrics.json"), &metrics)?;
    write_predictions(
        &dir.join("predictions.parquet"),
        &trained.test_ids,
        &trained.labels,
        &trained.test_probs,
        Some(&trained.test_targets),
    )?;
    write_plots(dir, trained)?;
    write_atomic(dir.join("report.md"), report_markdown(trained, config, embedding, join).as_bytes())?;
    Ok(dir.to_path_buf())
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Data(e.to_string()))?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn write_plots(dir: &Path, t: &TrainedHead) -> Result<()> {
    let ev = &t.test;
    let curves = |per: &[Option<crate::metrics::Curve>],
                  micro: &Option<crate::metrics::Curve>,
                  score: &dyn Fn(usize) -> Option<f64>,
                  micro_score: Option<f64>| {
        let mut series: Vec<Series> = per
            .iter()
            .enumerate()
            .filter_map(|(j, c)| {
                let c = c.as_ref()?;
                Some(Series {
                    name: format!("{} ({:.3})", t.labels[j], score(j).unwrap_or(f64::NAN)),
                    points: c.x.iter().copied().zip(c.y.iter().copied()).collect(),
                    emphasised: false,
                })
            })
            .collect();
        if let Some(c) = micro {
            series.push(Series {
                name: format!("micro average ({:.3})", micro_score.unwrap_or(f64::NAN)),
                points: c.x.iter().copied().zip(c.y.iter().copied()).collect(),
                emphasised: true,
            });
        }
        series
    };
    let roc = LineChart {
        title: format!("ROC on test — {}", t.name),
        x_label: "false positive rate".into(),
        y_label: "true positive rate".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        series: curves(&ev.roc_curves, &ev.micro_roc, &|j| ev.labels[j].roc_auc, ev.micro.roc_auc),
        diagonal: true,
    };
    write_chart(&roc.to_svg(), &dir.join("roc"))?;
    let pr = LineChart {
        title: format!("Precision-recall on test — {}", t.name),
        x_label: "recall".into(),
        y_label: "precision".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        series: curves(&ev.pr_curves, &ev.micro_pr, &|j| ev.labels[j].pr_auc, ev.micro.pr_auc),
        diagonal: false,
    };
    write_chart(&pr.to_svg(), &dir.join("pr"))?;
    if !t.history.is_empty() {
        write_training_chart(dir, t)?;
    }
    let labels = BarChart {
        title: format!("Training images per label — {}", t.name),
        x_label: "training images".into(),
        bars: t.labels.iter().cloned().zip(t.train_counts.iter().map(|&c| c as f64)).collect(),
    };
    write_chart(&labels.to_svg(), &dir.join("labels"))
}

/// Training curves (the MLP's per-epoch log).
fn write_training_chart(dir: &Path, t: &TrainedHead) -> Result<()> {
    let epochs = t.history.len() as f64;
    let pick = |f: &dyn Fn(&crate::train::EpochLog) -> Option<f64>| -> Vec<(f64, f64)> {
        t.history.iter().filter_map(|h| Some((h.epoch as f64, f(h)?))).collect()
    };
    let mut series = vec![
        Series { name: "train loss".into(), points: pick(&|h| Some(h.train_loss)), emphasised: false },
        Series { name: "val loss".into(), points: pick(&|h| h.val_loss), emphasised: false },
        Series { name: "val macro PR AUC".into(), points: pick(&|h| h.val_macro_pr_auc), emphasised: false },
        Series {
            name: "val macro ROC AUC".into(),
            points: pick(&|h| h.val_macro_roc_auc),
            emphasised: false,
        },
    ];
    series.retain(|s| !s.points.is_empty());
    let ymax = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0, f64::max);
    let training = LineChart {
        title: format!("Training — {} (best epoch {})", t.name, t.best_epoch),
        x_label: "epoch".into(),
        y_label: "loss / score".into(),
        x_range: (1.0, epochs.max(2.0)),
        y_range: (0.0, ymax * 1.05),
        series,
        diagonal: false,
    };
    write_chart(&training.to_svg(), &dir.join("training"))
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.3}"))
}

fn at_row(a: &AtThreshold) -> String {
    format!("{:.3} | {} ({:.3}) | {:.3}", a.precision, a.recall_fraction, a.recall, a.f1)
}

/// The human-readable report (tables as the seed's Table I).
pub fn report_markdown(
    t: &TrainedHead,
    config: &RunConfig,
    embedding: &CacheMetadata,
    join: &JoinStats,
) -> String {
    let ev = &t.test;
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", t.name);
    let model = match &t.head {
        Classifier::Linear(_) => format!(
            "Model: linear probe (linfa logistic regression per label, L2 alpha {}, at most {} L-BFGS \
             iterations; no class weights: the loss setting applies to the MLP only)",
            config.probe.alpha, config.probe.max_iterations
        ),
        Classifier::Mlp(h) => format!(
            "Model: Dense({}, ReLU) + Dense({}, sigmoid). Loss: {}. Best epoch {} of {} (by validation macro PR AUC)",
            h.shape.hidden,
            h.shape.outputs,
            config.loss,
            t.best_epoch,
            config.train.epochs
        ),
    };
    let _ = writeln!(
        s,
        "Embeddings: `{}` ({} x {}, {} pooling, {} px). Labels: column `{}`, {} labels. {model}. \
         Training rows: {}. Test images: {}. Training time: {:.1}s.\n",
        embedding.model_identity(),
        embedding.dim,
        embedding.dtype,
        embedding.pooling,
        embedding.input_size,
        config.labels.column,
        t.labels.len(),
        t.train_rows,
        ev.images,
        t.seconds
    );
    let _ = writeln!(
        s,
        "Join: {} embeddings, {} labelled rows, {} joined (train/val/test {}/{}/{}), {} labelled images without embedding.\n",
        join.embeddings, join.labelled, join.joined, join.per_split[0], join.per_split[1], join.per_split[2], join.labels_without_embedding
    );
    let _ = writeln!(s, "## Test metrics at F1-optimal thresholds (tuned on validation)\n");
    let _ =
        writeln!(s, "| label | train | support | precision | recall | F1 | ROC AUC | PR AUC | threshold |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &ev.labels {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            l.label,
            l.train_count,
            l.support,
            at_row(&l.at_f1),
            fmt_opt(l.roc_auc),
            fmt_opt(l.pr_auc),
            l.at_f1.threshold.map_or("-".into(), |t| format!("{t:.3}"))
        );
    }
    for (name, sum) in [("micro", &ev.micro), ("macro", &ev.macro_)] {
        let _ = writeln!(
            s,
            "| **{name} avg** | | | {:.3} | {:.3} | {:.3} | {} | {} | |",
            sum.at_f1.precision,
            sum.at_f1.recall,
            sum.at_f1.f1,
            fmt_opt(sum.roc_auc),
            fmt_opt(sum.pr_auc)
        );
    }
    let _ = writeln!(s, "\n## Averages by threshold policy\n");
    let _ = writeln!(
        s,
        "| policy | micro P | micro R | micro F1 | macro P | macro R | macro F1 | labels/image predicted |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let policies = [
        ("0.5", &ev.micro.at_0_5, &ev.macro_.at_0_5),
        ("F1-optimal", &ev.micro.at_f1, &ev.macro_.at_f1),
        (
            &*format!("max recall at precision >= {}", t.thresholds.min_precision),
            &ev.micro.at_precision,
            &ev.macro_.at_precision,
        ),
    ];
    for (name, mi, ma) in policies {
        let _ = writeln!(
            s,
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |",
            mi.precision, mi.recall, mi.f1, ma.precision, ma.recall, ma.f1, mi.labels_per_image
        );
    }
    let _ = writeln!(s, "\nTrue labels per test image: {:.2}.", ev.true_labels_per_image);
    if !ev.labels_without_positives.is_empty() {
        let _ = writeln!(
            s,
            "\nLabels without positives in test (left out of macro averages): {}.",
            ev.labels_without_positives.join(", ")
        );
    }
    let training = if t.history.is_empty() { "" } else { "![training](training.png)\n\n" };
    let _ = writeln!(s, "\n## Plots\n\n![ROC](roc.png)\n\n![PR](pr.png)\n\n{training}![labels](labels.png)");
    s
}
