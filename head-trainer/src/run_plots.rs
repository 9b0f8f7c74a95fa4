//! The plots of a run directory: ROC and precision-recall curves on test, the training curves,
//! the images per label.

use std::path::Path;

use crate::error::Result;
use crate::metrics::Curve;
use crate::plot::{write_chart, Bar, BarChart, Line, LineChart, TrainingChart};
use crate::train::TrainedHead;

/// A PR curve as the step function average precision integrates: precision `P_n` holds from
/// recall `R_{n-1}` to `R_n` (straight lines between the points would flatter the curve).
pub fn pr_steps(c: &Curve) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(2 * c.x.len());
    out.push((c.x[0], c.y[0]));
    for n in 1..c.x.len() {
        out.push((c.x[n - 1], c.y[n]));
        out.push((c.x[n], c.y[n]));
    }
    out
}

/// Writes `roc`, `pr`, `training` (MLP only) and `labels`, each as `.svg` and `.png`, into `dir`.
pub fn write_run_plots(dir: &Path, t: &TrainedHead) -> Result<()> {
    let ev = &t.test;
    let subtitle = format!("{} — {} labels, {} test images", t.name, t.labels.len(), ev.images);
    let lines = |curves: &[Option<Curve>], score: &dyn Fn(usize) -> String, steps: bool| -> Vec<Line> {
        curves
            .iter()
            .enumerate()
            .filter_map(|(j, c)| {
                let c = c.as_ref()?;
                let points =
                    if steps { pr_steps(c) } else { c.x.iter().copied().zip(c.y.iter().copied()).collect() };
                Some(Line { name: format!("{} ({})", t.labels[j], score(j)), points, emphasised: false })
            })
            .collect()
    };
    let auc = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
    let mut roc_lines = lines(&ev.roc_curves, &|j| format!("AUC {}", auc(ev.labels[j].roc_auc)), false);
    if let Some(c) = &ev.micro_roc {
        roc_lines.push(Line {
            name: format!("micro average (AUC {})", auc(ev.micro.roc_auc)),
            points: c.x.iter().copied().zip(c.y.iter().copied()).collect(),
            emphasised: true,
        });
    }
    let roc = LineChart {
        title: format!("ROC on test: {subtitle}"),
        x_label: "false positive rate".into(),
        y_label: "true positive rate".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        lines: roc_lines,
        diagonal: true,
        baseline: None,
    };
    write_chart(&roc.to_svg()?, &dir.join("roc"))?;

    let prevalence = |j: usize| ev.labels[j].support as f64 / ev.images.max(1) as f64;
    let mut pr_lines = lines(
        &ev.pr_curves,
        &|j| format!("AP {}, prevalence {:.3}", auc(ev.labels[j].pr_auc), prevalence(j)),
        true,
    );
    let positives: usize = ev.labels.iter().map(|l| l.support).sum();
    let micro_prevalence = positives as f64 / (ev.images * t.labels.len()).max(1) as f64;
    if let Some(c) = &ev.micro_pr {
        pr_lines.push(Line {
            name: format!("micro average (AP {})", auc(ev.micro.pr_auc)),
            points: pr_steps(c),
            emphasised: true,
        });
    }
    let pr = LineChart {
        title: format!("Precision-recall on test: {subtitle}"),
        x_label: "recall".into(),
        y_label: "precision".into(),
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        lines: pr_lines,
        diagonal: false,
        baseline: Some((micro_prevalence, format!("chance: micro prevalence {micro_prevalence:.3}"))),
    };
    write_chart(&pr.to_svg()?, &dir.join("pr"))?;

    if !t.history.is_empty() {
        let col =
            |f: &dyn Fn(&crate::train::EpochLog) -> Option<f64>| t.history.iter().map(f).collect::<Vec<_>>();
        let training = TrainingChart {
            title: format!("Training: {}", t.name),
            epochs: t.history.iter().map(|h| h.epoch as u32).collect(),
            losses: vec![
                ("train loss".into(), col(&|h| Some(h.train_loss))),
                ("validation loss".into(), col(&|h| h.val_loss)),
            ],
            scores: vec![
                ("val macro PR AUC (picks the epoch)".into(), col(&|h| h.val_macro_pr_auc)),
                ("val macro ROC AUC".into(), col(&|h| h.val_macro_roc_auc)),
            ],
            best_epoch: t.best_epoch as u32,
        };
        write_chart(&training.to_svg()?, &dir.join("training"))?;
    }

    let labels = BarChart {
        title: format!("Training images per label: {}", t.name),
        x_label: "training images".into(),
        bars: t
            .labels
            .iter()
            .zip(&t.train_counts)
            .zip(&ev.labels)
            .map(|((l, &c), m)| Bar {
                label: l.clone(),
                value: c as f64,
                note: format!("  ({} in test)", m.support),
                group: 0,
            })
            .collect(),
        from_zero: true,
        groups_note: None,
    };
    write_chart(&labels.to_svg()?, &dir.join("labels"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_steps_enclose_the_average_precision() {
        // recall 0 -> 0.5 -> 1 with precision 1 then 0.5: AP = 0.5 * 1 + 0.5 * 0.5
        let c = Curve { x: vec![0.0, 0.5, 1.0], y: vec![1.0, 1.0, 0.5] };
        let s = pr_steps(&c);
        assert_eq!(s, [(0.0, 1.0), (0.0, 1.0), (0.5, 1.0), (0.5, 0.5), (1.0, 0.5)]);
        let area: f64 = s.windows(2).map(|w| (w[1].0 - w[0].0) * w[1].1).sum();
        assert!((area - 0.75).abs() < 1e-12);
    }
}
