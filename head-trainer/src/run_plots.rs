//! The plots of a run directory: ROC and PR curves on test, the training curves, the training
//! images per label.

use std::path::Path;

use crate::error::Result;
use crate::plot::{write_chart, BarChart, LineChart, Series};
use crate::train::TrainedHead;

/// Writes `roc`, `pr`, `training` (MLP only) and `labels`, each as `.svg` and `.png`, into `dir`.
pub fn write_run_plots(dir: &Path, t: &TrainedHead) -> Result<()> {
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
