//! Evaluation metrics, with scikit-learn's definitions:
//! `roc_curve`/`roc_auc_score` (trapezoids over distinct thresholds), `average_precision_score`
//! (Σ (R_n − R_{n−1}) P_n over distinct thresholds), and `precision_recall_fscore_support` with
//! `zero_division=0`. Micro averages pool every (image, label) pair; macro averages are the mean
//! over labels that have positives in the evaluated split (others are reported as such).

use serde::{Deserialize, Serialize};

/// Points of a ROC or PR curve.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Curve {
    /// x values (FPR, or recall).
    pub x: Vec<f64>,
    /// y values (TPR, or precision).
    pub y: Vec<f64>,
}

/// Cumulative (tp, fp) at each distinct score, highest score first, with that score.
fn sweep(scores: &[f32], y: &[bool]) -> Vec<(f32, usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    for (i, &idx) in order.iter().enumerate() {
        if y[idx] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last = i + 1 == order.len() || scores[order[i + 1]] != scores[idx];
        if last {
            out.push((scores[idx], tp, fp));
        }
    }
    out
}

/// ROC curve and its area; `None` when `y` has only one class (undefined, as in scikit-learn).
pub fn roc(scores: &[f32], y: &[bool]) -> Option<(Curve, f64)> {
    let pos = y.iter().filter(|&&v| v).count();
    let neg = y.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut curve = Curve { x: vec![0.0], y: vec![0.0] };
    let mut auc = 0.0;
    for (_, tp, fp) in sweep(scores, y) {
        let (fx, ty) = (fp as f64 / neg as f64, tp as f64 / pos as f64);
        let (px, py) = (*curve.x.last().unwrap_or(&0.0), *curve.y.last().unwrap_or(&0.0));
        auc += (fx - px) * (py + ty) / 2.0;
        curve.x.push(fx);
        curve.y.push(ty);
    }
    Some((curve, auc))
}

/// Precision-recall curve (recall ascending from the highest threshold) and average precision;
/// `None` when `y` has no positive.
pub fn average_precision(scores: &[f32], y: &[bool]) -> Option<(Curve, f64)> {
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 {
        return None;
    }
    let mut curve = Curve { x: vec![0.0], y: vec![1.0] };
    let (mut ap, mut prev_r) = (0.0, 0.0);
    for (_, tp, fp) in sweep(scores, y) {
        let p = tp as f64 / (tp + fp) as f64;
        let r = tp as f64 / pos as f64;
        ap += (r - prev_r) * p;
        prev_r = r;
        curve.x.push(r);
        curve.y.push(p);
    }
    Some((curve, ap))
}

/// Confusion counts of thresholded predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    pub fn_: usize,
}

impl Counts {
    /// Counts of `score >= threshold` against `y`.
    pub fn at(scores: &[f32], y: &[bool], threshold: f32) -> Self {
        let mut c = Counts::default();
        for (&s, &t) in scores.iter().zip(y) {
            match (s >= threshold, t) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => {}
            }
        }
        c
    }

    /// Adds another label's counts (micro averaging).
    pub fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }

    /// tp / (tp + fp), 0 when nothing is predicted.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn), 0 when there are no positives.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The threshold with the best F1 on (`scores`, `y`); 0.5 when there is no positive.
pub fn f1_optimal_threshold(scores: &[f32], y: &[bool]) -> f32 {
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 {
        return 0.5;
    }
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    for (s, tp, fp) in sweep(scores, y) {
        let f1 = 2.0 * tp as f64 / (2 * tp + fp + (pos - tp)) as f64;
        if f1 > best.0 {
            best = (f1, s);
        }
    }
    best.1
}

/// ORES-style: the lowest threshold (highest recall) whose precision is at least `min_precision`;
/// `None` if no threshold reaches it.
pub fn max_recall_threshold(scores: &[f32], y: &[bool], min_precision: f64) -> Option<f32> {
    sweep(scores, y)
        .into_iter()
        .filter(|&(_, tp, fp)| tp > 0 && tp as f64 / (tp + fp) as f64 >= min_precision)
        .map(|(s, _, _)| s)
        .next_back()
}

/// Column `j` of a row-major `n x m` matrix.
pub fn column<T: Copy>(values: &[T], m: usize, j: usize) -> Vec<T> {
    values.iter().skip(j).step_by(m).copied().collect()
}
