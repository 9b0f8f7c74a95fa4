//! Training one or many heads on the same batch plan, fused into one [`HeadStack`].
//!
//! The batch plan (shuffled order of training rows, batch size, epochs) is shared; each head
//! sees the rows of the plan that its label configuration keeps (rows it drops are masked out of
//! its loss). After every epoch each head is scored on validation (macro PR AUC) and its best
//! epoch is kept; thresholds are tuned on validation and metrics reported on test.

use std::time::Instant;

use feature_cache::Split;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::data::{Features, Joined};
use crate::error::{Result, TrainError};
use crate::evaluate::{evaluate, Evaluation, Thresholds};
use crate::labels::LabelSpace;
use crate::metrics::{average_precision, column, roc};
use crate::model::{Adam, Classifier, HeadShape, HeadStack, LossKind, LossWeights};
use crate::rng::Rng;
use crate::step::TrainStep;

/// One label configuration to train.
#[derive(Debug, Clone)]
pub struct HeadJob {
    /// Run name.
    pub name: String,
    /// Its labels and targets (indexed by label-table row).
    pub labels: LabelSpace,
    /// Hidden units.
    pub hidden: usize,
    /// Loss.
    pub loss: LossKind,
    /// Seed of its initial weights.
    pub seed: u64,
}

/// Settings shared by every head of a fused training.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    /// Passes over the training rows.
    pub epochs: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Adam learning rate (constant).
    pub learning_rate: f32,
    /// Seed of the batch order.
    pub seed: u64,
    /// Precision target of the ORES-style threshold.
    pub min_precision: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self { epochs: 15, batch_size: 128, learning_rate: 1e-3, seed: 42, min_precision: 0.9 }
    }
}

/// One epoch of one head.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation macro PR AUC (what picks the best epoch).
    pub val_macro_pr_auc: Option<f64>,
    /// Validation macro ROC AUC.
    pub val_macro_roc_auc: Option<f64>,
}

/// A trained and evaluated head.
#[derive(Debug, Clone)]
pub struct TrainedHead {
    /// Run name.
    pub name: String,
    /// The classifier (an MLP head at its best epoch, or a linear probe).
    pub head: Classifier,
    /// Label names in output order.
    pub labels: Vec<String>,
    /// Training-split counts per label.
    pub train_counts: Vec<usize>,
    /// Loss used.
    pub loss: LossKind,
    /// Best epoch (1-based).
    pub best_epoch: usize,
    /// Per-epoch log.
    pub history: Vec<EpochLog>,
    /// Thresholds tuned on validation.
    pub thresholds: Thresholds,
    /// Test evaluation.
    pub test: Evaluation,
    /// Test ids, probabilities (n x m) and targets, for predictions.parquet.
    pub test_ids: Vec<String>,
    /// Test probabilities.
    pub test_probs: Vec<f32>,
    /// Test targets.
    pub test_targets: Vec<bool>,
    /// Training rows this head used.
    pub train_rows: usize,
    /// Wall-clock seconds of the fused training (shared by every head of the stack).
    pub seconds: f64,
}

/// Rows of a split kept by a head, as (feature row, label-table row).
pub(crate) fn split_rows(joined: &Joined, split: Split, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, usize)> {
    joined.rows.iter().filter(|r| r.2 == split && keep(r.1)).map(|r| (r.0, r.1)).collect()
}

/// Dense targets (rows x m) of `rows` for `labels`.
fn dense_targets(labels: &LabelSpace, rows: &[(usize, usize)]) -> Vec<bool> {
    let m = labels.len();
    let mut y = vec![false; rows.len() * m];
    for (i, &(_, tr)) in rows.iter().enumerate() {
        for &j in labels.targets[tr].as_deref().unwrap_or(&[]) {
            y[i * m + j as usize] = true;
        }
    }
    y
}

/// Probabilities of every head of `stack` on `rows` (feature rows), in chunks.
fn predict_stack(stack: &HeadStack, features: &Features, rows: &[usize]) -> Result<Vec<Vec<f32>>> {
    let mut out: Vec<Vec<f32>> = stack.shapes.iter().map(|s| vec![0.0; rows.len() * s.outputs]).collect();
    let mut hidden = Vec::new();
    let mut logits: Vec<Vec<f32>> = vec![Vec::new(); stack.len()];
    features.for_rows(rows, 4096, |x, positions| {
        stack.forward(x, positions.len(), &mut hidden, &mut logits);
        for ((o, l), s) in out.iter_mut().zip(&logits).zip(&stack.shapes) {
            let m = s.outputs;
            for (i, &p) in positions.iter().enumerate() {
                for (dst, &z) in o[p * m..(p + 1) * m].iter_mut().zip(&l[i * m..(i + 1) * m]) {
                    *dst = crate::model::sigmoid(z);
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Probabilities of one classifier on `rows` (feature rows), row-major `rows.len() x m`.
pub(crate) fn predict_rows(classifier: &Classifier, features: &Features, rows: &[usize]) -> Result<Vec<f32>> {
    let m = classifier.shape().outputs;
    let mut out = vec![0f32; rows.len() * m];
    features.for_rows(rows, 4096, |x, positions| {
        let p = classifier.predict(x, positions.len());
        for (i, &pos) in positions.iter().enumerate() {
            out[pos * m..(pos + 1) * m].copy_from_slice(&p[i * m..(i + 1) * m]);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Trains `jobs` fused on one batch plan and evaluates each on test.
pub fn train_fused(
    features: &Features,
    joined: &Joined,
    jobs: &[HeadJob],
    settings: &TrainSettings,
    progress: &ProgressBar,
) -> Result<Vec<TrainedHead>> {
    // on a thread of the pool, so that each training step's parts start without waking the
    // calling thread (see `TrainStep::run`)
    rayon::scope(|_| train_fused_on_pool(features, joined, jobs, settings, progress))
}

fn train_fused_on_pool(
    features: &Features,
    joined: &Joined,
    jobs: &[HeadJob],
    settings: &TrainSettings,
    progress: &ProgressBar,
) -> Result<Vec<TrainedHead>> {
    let start = Instant::now();
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if settings.batch_size == 0 || settings.epochs == 0 {
        return Err(TrainError::Config("batch_size and epochs must be positive".into()));
    }
    let kept = |k: usize| move |tr: usize| jobs[k].labels.targets[tr].is_some();
    let any_kept = |tr: usize| jobs.iter().any(|j| j.labels.targets[tr].is_some());
    let mut plan: Vec<(usize, usize)> = split_rows(joined, Split::Train, &any_kept);
    if plan.is_empty() {
        return Err(TrainError::Data("the training split is empty after label selection".into()));
    }
    // weights of each head's loss from its own training rows
    let weights: Vec<LossWeights> = jobs
        .iter()
        .map(|j| {
            let n = plan.iter().filter(|r| j.labels.targets[r.1].is_some()).count();
            LossWeights::new(j.loss, n, &j.labels.train_counts)
        })
        .collect();
    let shapes: Vec<HeadShape> =
        jobs.iter().map(|j| HeadShape { hidden: j.hidden, outputs: j.labels.len() }).collect();
    let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
    let mut stack = HeadStack::new(features.dim, &shapes, &seeds);
    let mut best = stack.clone();
    let mut best_score: Vec<Option<f64>> = vec![None; jobs.len()];
    let mut best_epoch = vec![0usize; jobs.len()];
    let mut adam = Adam::new(stack.params.len(), settings.learning_rate);
    let mut grad = vec![0f32; stack.params.len()];

    let val: Vec<Vec<(usize, usize)>> =
        (0..jobs.len()).map(|k| split_rows(joined, Split::Val, &kept(k))).collect();
    let val_union: Vec<usize> = split_rows(joined, Split::Val, &any_kept).iter().map(|r| r.0).collect();
    let val_pos: Vec<Vec<usize>> = {
        // position of each head's val rows inside val_union
        let index: std::collections::HashMap<usize, usize> =
            val_union.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        val.iter().map(|rows| rows.iter().map(|r| index[&r.0]).collect()).collect()
    };
    let val_y: Vec<Vec<bool>> =
        jobs.iter().zip(&val).map(|(j, rows)| dense_targets(&j.labels, rows)).collect();

    let batches_per_epoch = plan.len().div_ceil(settings.batch_size);
    progress.set_length((settings.epochs * batches_per_epoch) as u64);
    let mut rng = Rng::new(settings.seed);
    let mut history: Vec<Vec<EpochLog>> = vec![Vec::new(); jobs.len()];
    let step = TrainStep::for_pool(&stack);

    for epoch in 1..=settings.epochs {
        let mut loss_sum = vec![0f64; jobs.len()];
        let mut loss_batches = vec![0usize; jobs.len()];
        features.for_each_batch_of_epoch(&mut plan, settings.batch_size, &mut rng, |x, batch| {
            // head k's loss on rows of the batch: rows without a label set count for nothing
            let loss = |k: usize, rows: std::ops::Range<usize>, z: &[f32], dz: &mut [f32]| {
                let job = &jobs[k];
                let m = job.labels.len();
                let valid = batch.iter().filter(|r| job.labels.targets[r.1].is_some()).count();
                if valid == 0 {
                    return None;
                }
                let norm = 1.0 / (valid * m) as f32;
                let mut loss = 0f64;
                for (i, r) in batch[rows].iter().enumerate() {
                    let Some(t) = job.labels.targets[r.1].as_deref() else { continue };
                    let (z, g) = (&z[i * m..(i + 1) * m], &mut dz[i * m..(i + 1) * m]);
                    let mut pos = t.iter().peekable();
                    for j in 0..m {
                        let y = pos.next_if(|&&p| p as usize == j).is_some();
                        let (l, d) = weights[k].loss_and_grad(j, z[j], y);
                        loss += f64::from(l);
                        g[j] = d * norm;
                    }
                }
                Some(loss * f64::from(norm))
            };
            let losses = step.run(&mut stack, x, batch.len(), &loss, &mut grad, Some(&mut adam));
            for (k, l) in losses.into_iter().enumerate() {
                if let Some(l) = l {
                    loss_sum[k] += l;
                    loss_batches[k] += 1;
                }
            }
            progress.inc(1);
            Ok(())
        })?;
        // validation
        let probs = predict_stack(&stack, features, &val_union)?;
        for (k, job) in jobs.iter().enumerate() {
            let m = job.labels.len();
            let p: Vec<f32> =
                val_pos[k].iter().flat_map(|&i| probs[k][i * m..(i + 1) * m].iter().copied()).collect();
            let (auc_pr, auc_roc, val_loss) = macro_scores(&p, &val_y[k], m, &weights[k]);
            history[k].push(EpochLog {
                epoch,
                train_loss: loss_sum[k] / loss_batches[k].max(1) as f64,
                val_loss,
                val_macro_pr_auc: auc_pr,
                val_macro_roc_auc: auc_roc,
            });
            // best epoch by val macro PR AUC; without validation data, the last epoch
            let better = match (auc_pr, best_score[k]) {
                (Some(s), Some(b)) => s > b,
                (Some(_), None) => true,
                (None, _) => true,
            };
            if better {
                best_score[k] = auc_pr;
                best_epoch[k] = epoch;
                best.copy_head_from(&stack, k);
            }
        }
        progress.set_message(format!("epoch {epoch}/{}", settings.epochs));
    }

    // thresholds on validation, metrics on test, with each head's best epoch
    let seconds = start.elapsed().as_secs_f64();
    jobs.iter()
        .enumerate()
        .map(|(k, job)| {
            let fitted = Fitted {
                classifier: Classifier::Mlp(best.head(k)),
                history: std::mem::take(&mut history[k]),
                best_epoch: best_epoch[k],
                train_rows: plan.iter().filter(|r| job.labels.targets[r.1].is_some()).count(),
                seconds,
            };
            finish_head(features, joined, job, fitted, settings)
        })
        .collect()
}

/// A classifier fitted for one job, before evaluation.
pub(crate) struct Fitted {
    /// The classifier.
    pub classifier: Classifier,
    /// Per-epoch log (empty for the linear probe).
    pub history: Vec<EpochLog>,
    /// Best epoch (0 for the linear probe).
    pub best_epoch: usize,
    /// Training rows used.
    pub train_rows: usize,
    /// Wall-clock seconds of its training.
    pub seconds: f64,
}

/// Tunes thresholds on validation and evaluates on test: the same for every kind of classifier.
pub(crate) fn finish_head(
    features: &Features,
    joined: &Joined,
    job: &HeadJob,
    fitted: Fitted,
    settings: &TrainSettings,
) -> Result<TrainedHead> {
    let m = job.labels.len();
    let kept = |tr: usize| job.labels.targets[tr].is_some();
    let probs_of = |rows: &[(usize, usize)]| {
        let idx: Vec<usize> = rows.iter().map(|r| r.0).collect();
        predict_rows(&fitted.classifier, features, &idx)
    };
    let val_rows = split_rows(joined, Split::Val, &kept);
    let thresholds = if val_rows.is_empty() {
        Thresholds { f1: vec![0.5; m], precision: vec![None; m], min_precision: settings.min_precision }
    } else {
        Thresholds::tune(
            &probs_of(&val_rows)?,
            &dense_targets(&job.labels, &val_rows),
            m,
            settings.min_precision,
        )
    };
    let test_rows = split_rows(joined, Split::Test, &kept);
    let test_probs = probs_of(&test_rows)?;
    let test_targets = dense_targets(&job.labels, &test_rows);
    let test = evaluate(
        "test",
        &job.labels.names,
        &job.labels.train_counts,
        &test_probs,
        &test_targets,
        &thresholds,
    );
    Ok(TrainedHead {
        name: job.name.clone(),
        head: fitted.classifier,
        labels: job.labels.names.clone(),
        train_counts: job.labels.train_counts.clone(),
        loss: job.loss,
        best_epoch: fitted.best_epoch,
        history: fitted.history,
        thresholds,
        test,
        test_ids: test_rows.iter().map(|r| features.ids[r.0].clone()).collect(),
        test_probs,
        test_targets,
        train_rows: fitted.train_rows,
        seconds: fitted.seconds,
    })
}

/// Macro PR AUC, macro ROC AUC and mean loss of validation predictions.
fn macro_scores(p: &[f32], y: &[bool], m: usize, w: &LossWeights) -> (Option<f64>, Option<f64>, Option<f64>) {
    if p.is_empty() {
        return (None, None, None);
    }
    use rayon::prelude::*;
    // labels on every core (each sorts its column twice); the same order of sums on any count
    let per_label: Vec<(Option<f64>, Option<f64>)> = (0..m)
        .into_par_iter()
        .map(|j| {
            let (s, t) = (column(p, m, j), column(y, m, j));
            (average_precision(&s, &t).map(|r| r.1), roc(&s, &t).map(|r| r.1))
        })
        .collect();
    let aps: Vec<f64> = per_label.iter().filter_map(|r| r.0).collect();
    let rocs: Vec<f64> = per_label.iter().filter_map(|r| r.1).collect();
    const ROWS: usize = 4096;
    let chunk_losses: Vec<f64> = p
        .par_chunks(ROWS * m)
        .zip(y.par_chunks(ROWS * m))
        .map(|(p, y)| {
            p.iter()
                .zip(y)
                .enumerate()
                .map(|(i, (&pi, &yi))| {
                    let z = (pi.clamp(1e-7, 1.0 - 1e-7) / (1.0 - pi.clamp(1e-7, 1.0 - 1e-7))).ln();
                    f64::from(w.loss_and_grad(i % m, z, yi).0)
                })
                .sum::<f64>()
        })
        .collect();
    let loss = chunk_losses.iter().sum::<f64>() / p.len() as f64;
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    (mean(&aps), mean(&rocs), Some(loss))
}
