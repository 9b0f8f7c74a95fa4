//! The linear-probe baseline: one L2-regularised logistic regression per label, fitted with
//! linfa's L-BFGS on the same rows, split and label configuration as the MLP head, then tuned
//! and evaluated by the same code.
//!
//! The objective is linfa's `Σ log(1 + exp(-y·z)) + α/2·‖w‖²` (intercept not penalised), which is
//! scikit-learn's `LogisticRegression(C = 1/α)`. It has no class weights: the run's `loss` applies
//! to the MLP only, and the report says so.

use std::time::Instant;

use feature_cache::Split;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{Features, Joined};
use crate::error::{Result, TrainError};
use crate::model::{Classifier, LinearProbe};
use crate::train::{finish_head, split_rows, Fitted, HeadJob, TrainSettings, TrainedHead};

/// Settings of the linear probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSettings {
    /// L2 penalty α (scikit-learn's C = 1/α).
    pub alpha: f32,
    /// L-BFGS iterations per label at most.
    pub max_iterations: u64,
    /// Stop when the gradient's norm falls below this.
    pub gradient_tolerance: f32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self { alpha: 1.0, max_iterations: 100, gradient_tolerance: 1e-4 }
    }
}

/// Fits the linear probe of `job` on its training rows and evaluates it like a head (thresholds
/// on validation, metrics on test). Labels are fitted in parallel.
pub fn train_linear(
    features: &Features,
    joined: &Joined,
    job: &HeadJob,
    settings: &TrainSettings,
    probe: &ProbeSettings,
) -> Result<TrainedHead> {
    let start = Instant::now();
    let kept = |tr: usize| job.labels.targets[tr].is_some();
    let train = split_rows(joined, Split::Train, &kept);
    if train.is_empty() {
        return Err(TrainError::Data("the training split is empty after label selection".into()));
    }
    let (n, d, m) = (train.len(), features.dim, job.labels.len());
    if features.is_streamed() {
        return Err(TrainError::Config(format!(
            "the linear probe (linfa) needs its {n} x {d} training matrix in memory ({} MiB as f32), \
             more than --memory-limit allows for the embeddings; raise the limit or use the MLP head",
            (n * d * 4) >> 20
        )));
    }
    // column-major n x D: linfa's gradient is X^T·r, which ndarray computes as one contiguous dot
    // product per feature only in this layout
    let mut columns = vec![0f32; d * n];
    let rows: Vec<usize> = train.iter().map(|r| r.0).collect();
    features.for_rows(&rows, 4096, |x, positions| {
        for (row, &i) in x.chunks_exact(d).zip(positions) {
            for (k, &v) in row.iter().enumerate() {
                columns[k * n + i] = v;
            }
        }
        Ok(())
    })?;
    let records = ArrayView2::from_shape((d, n), &columns)
        .map_err(|e| TrainError::Data(e.to_string()))?
        .reversed_axes();
    let mut targets = vec![vec![false; n]; m];
    for (i, &(_, tr)) in train.iter().enumerate() {
        for &j in job.labels.targets[tr].as_deref().unwrap_or(&[]) {
            targets[j as usize][i] = true;
        }
    }
    let fitted: Vec<(Vec<f32>, f32)> = targets
        .into_par_iter()
        .enumerate()
        .map(|(j, y)| fit_label(records, y, probe).map_err(|e| label_error(job, j, e)))
        .collect::<Result<_>>()?;
    let mut w = vec![0f32; d * m];
    let mut b = vec![0f32; m];
    for (j, (wj, bj)) in fitted.into_iter().enumerate() {
        for (k, v) in wj.into_iter().enumerate() {
            w[k * m + j] = v;
        }
        b[j] = bj;
    }
    let fitted = Fitted {
        classifier: Classifier::Linear(LinearProbe { dim: d, outputs: m, w, b }),
        history: Vec::new(),
        best_epoch: 0,
        train_rows: n,
        seconds: start.elapsed().as_secs_f64(),
    };
    finish_head(features, joined, job, fitted, settings)
}

fn label_error(job: &HeadJob, j: usize, e: linfa_logistic::error::Error) -> TrainError {
    TrainError::Data(format!("linear probe, label `{}`: {e}", job.labels.names[j]))
}

/// Weights and intercept of `P(y = true)` for one label. A label whose training rows are all one
/// class gets the constant prediction of that class (logit ±20), as L-BFGS has nothing to fit.
fn fit_label(
    records: ArrayView2<'_, f32>,
    y: Vec<bool>,
    probe: &ProbeSettings,
) -> std::result::Result<(Vec<f32>, f32), linfa_logistic::error::Error> {
    let d = records.ncols();
    let positives = y.iter().filter(|&&v| v).count();
    if positives == 0 || positives == y.len() {
        return Ok((vec![0.0; d], if positives == 0 { -20.0 } else { 20.0 }));
    }
    let dataset = DatasetBase::new(records, Array1::from(y));
    let model = LogisticRegression::default()
        .alpha(probe.alpha)
        .max_iterations(probe.max_iterations)
        .gradient_tolerance(probe.gradient_tolerance)
        .fit(&dataset)?;
    // linfa's positive class is the more frequent one; orient the model to P(true)
    let sign = if model.labels().pos.class { 1.0 } else { -1.0 };
    Ok((model.params().iter().map(|v| sign * v).collect(), sign * model.intercept()))
}
