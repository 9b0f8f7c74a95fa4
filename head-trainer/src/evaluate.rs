//! A head's evaluation on a split: per-label and averaged metrics at three threshold policies
//! (0.5, per-label F1-optimal, ORES-style max recall at a minimum precision), thresholds tuned
//! on the validation split and applied to the test split.

use serde::{Deserialize, Serialize};

use crate::metrics::{
    average_precision, column, f1_optimal_threshold, max_recall_threshold, roc, Counts, Curve,
};

/// Thresholds tuned on validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// Per-label F1-optimal thresholds.
    pub f1: Vec<f32>,
    /// Per-label max-recall-at-precision thresholds (`None`: precision never reached on val).
    pub precision: Vec<Option<f32>>,
    /// The precision target of `precision`.
    pub min_precision: f64,
}

impl Thresholds {
    /// Tunes thresholds on validation probabilities `probs` (n x m) and targets `y`.
    pub fn tune(probs: &[f32], y: &[bool], m: usize, min_precision: f64) -> Self {
        let mut f1 = Vec::with_capacity(m);
        let mut precision = Vec::with_capacity(m);
        for j in 0..m {
            let (s, t) = (column(probs, m, j), column(y, m, j));
            f1.push(f1_optimal_threshold(&s, &t));
            precision.push(max_recall_threshold(&s, &t, min_precision));
        }
        Self { f1, precision, min_precision }
    }
}

/// Metrics of one label at one threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AtThreshold {
    /// The threshold (`None`: unattainable precision target; nothing predicted).
    pub threshold: Option<f32>,
    /// Confusion counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Recall as "found/positives", as the seed reports it.
    pub recall_fraction: String,
}

impl AtThreshold {
    fn new(scores: &[f32], y: &[bool], threshold: Option<f32>) -> Self {
        let counts = match threshold {
            Some(t) => Counts::at(scores, y, t),
            None => Counts { tp: 0, fp: 0, fn_: y.iter().filter(|&&v| v).count() },
        };
        Self {
            threshold,
            counts,
            precision: counts.precision(),
            recall: counts.recall(),
            f1: counts.f1(),
            recall_fraction: format!("{}/{}", counts.tp, counts.tp + counts.fn_),
        }
    }
}

/// One label's evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelMetrics {
    /// Label name.
    pub label: String,
    /// Positives in the training split.
    pub train_count: usize,
    /// Positives in the evaluated split.
    pub support: usize,
    /// ROC AUC (`None` if the split has no positive or no negative).
    pub roc_auc: Option<f64>,
    /// Average precision (`None` if no positive).
    pub pr_auc: Option<f64>,
    /// At 0.5.
    pub at_0_5: AtThreshold,
    /// At the F1-optimal threshold.
    pub at_f1: AtThreshold,
    /// At the max-recall-at-precision threshold.
    pub at_precision: AtThreshold,
}

/// Averages at one threshold policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Averaged {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Mean number of labels predicted per image.
    pub labels_per_image: f64,
}

/// Micro or macro summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// ROC AUC.
    pub roc_auc: Option<f64>,
    /// PR AUC (average precision).
    pub pr_auc: Option<f64>,
    /// At 0.5.
    pub at_0_5: Averaged,
    /// At F1-optimal thresholds.
    pub at_f1: Averaged,
    /// At max-recall-at-precision thresholds.
    pub at_precision: Averaged,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// Split evaluated.
    pub split: String,
    /// Images evaluated.
    pub images: usize,
    /// Mean number of true labels per image.
    pub true_labels_per_image: f64,
    /// Per label.
    pub labels: Vec<LabelMetrics>,
    /// Micro averages.
    pub micro: Summary,
    /// Macro averages over labels with positives.
    pub macro_: Summary,
    /// Labels with no positive in the split (left out of macro averages).
    pub labels_without_positives: Vec<String>,
    /// ROC curve per label (`None` where undefined), for plots.
    #[serde(skip, default)]
    pub roc_curves: Vec<Option<Curve>>,
    /// Micro-average ROC curve.
    #[serde(skip, default)]
    pub micro_roc: Option<Curve>,
    /// PR curve per label.
    #[serde(skip, default)]
    pub pr_curves: Vec<Option<Curve>>,
    /// Micro-average PR curve.
    #[serde(skip, default)]
    pub micro_pr: Option<Curve>,
}

/// Evaluates probabilities `probs` (n x m) against targets `y` with tuned `thresholds`.
pub fn evaluate(
    split: &str,
    names: &[String],
    train_counts: &[usize],
    probs: &[f32],
    y: &[bool],
    thresholds: &Thresholds,
) -> Evaluation {
    let m = names.len();
    let n = probs.len().checked_div(m).unwrap_or(0);
    let mut labels = Vec::with_capacity(m);
    let (mut roc_curves, mut pr_curves) = (Vec::with_capacity(m), Vec::with_capacity(m));
    let mut micro = [Counts::default(); 3];
    let mut predicted = [0usize; 3];
    for j in 0..m {
        let (s, t) = (column(probs, m, j), column(y, m, j));
        let r = roc(&s, &t);
        let ap = average_precision(&s, &t);
        let at = [
            AtThreshold::new(&s, &t, Some(0.5)),
            AtThreshold::new(&s, &t, Some(thresholds.f1[j])),
            AtThreshold::new(&s, &t, thresholds.precision[j]),
        ];
        for (i, a) in at.iter().enumerate() {
            micro[i].add(a.counts);
            predicted[i] += a.counts.tp + a.counts.fp;
        }
        let [at_0_5, at_f1, at_precision] = at;
        labels.push(LabelMetrics {
            label: names[j].clone(),
            train_count: train_counts[j],
            support: t.iter().filter(|&&v| v).count(),
            roc_auc: r.as_ref().map(|x| x.1),
            pr_auc: ap.as_ref().map(|x| x.1),
            at_0_5,
            at_f1,
            at_precision,
        });
        roc_curves.push(r.map(|x| x.0));
        pr_curves.push(ap.map(|x| x.0));
    }
    let micro_roc = roc(probs, y);
    let micro_ap = average_precision(probs, y);
    let per_image = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
    let averaged = |c: Counts, pred: usize| Averaged {
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        labels_per_image: per_image(pred),
    };
    let with_pos: Vec<&LabelMetrics> = labels.iter().filter(|l| l.support > 0).collect();
    let mean = |f: &dyn Fn(&LabelMetrics) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = with_pos.iter().filter_map(|l| f(l)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let macro_at = |pick: &dyn Fn(&LabelMetrics) -> &AtThreshold, i: usize| Averaged {
        precision: mean(&|l| Some(pick(l).precision)).unwrap_or(0.0),
        recall: mean(&|l| Some(pick(l).recall)).unwrap_or(0.0),
        f1: mean(&|l| Some(pick(l).f1)).unwrap_or(0.0),
        labels_per_image: per_image(predicted[i]),
    };
    let macro_ = Summary {
        roc_auc: mean(&|l| l.roc_auc),
        pr_auc: mean(&|l| l.pr_auc),
        at_0_5: macro_at(&|l| &l.at_0_5, 0),
        at_f1: macro_at(&|l| &l.at_f1, 1),
        at_precision: macro_at(&|l| &l.at_precision, 2),
    };
    let micro_summary = Summary {
        roc_auc: micro_roc.as_ref().map(|x| x.1),
        pr_auc: micro_ap.as_ref().map(|x| x.1),
        at_0_5: averaged(micro[0], predicted[0]),
        at_f1: averaged(micro[1], predicted[1]),
        at_precision: averaged(micro[2], predicted[2]),
    };
    Evaluation {
        split: split.to_string(),
        images: n,
        true_labels_per_image: per_image(y.iter().filter(|&&v| v).count()),
        labels_without_positives: labels.iter().filter(|l| l.support == 0).map(|l| l.label.clone()).collect(),
        labels,
        micro: micro_summary,
        macro_,
        roc_curves,
        micro_roc: micro_roc.map(|x| x.0),
        pr_curves,
        micro_pr: micro_ap.map(|x| x.0),
    }
}
