//! Training one or many heads, fused into one [`HeadStack`].
//!
//! Each head trains on the training rows its label configuration keeps, in the order its own
//! seeded generator draws, in batches of the shared size — exactly what it would do alone, so a
//! run's result is a function of its configuration, seed and thread count, never of the heads it
//! was fused with. After every epoch each head is scored on validation (macro PR AUC) and its
//! best epoch is kept; thresholds are tuned on validation and metrics reported on test.

use std::time::Instant;

use feature_cache::{Progress, Split};
use serde::Serialize;

use crate::data::{Features, Joined};
use crate::error::{Result, TrainError};
use crate::evaluate::{evaluate, Evaluation, Thresholds};
use crate::labels::LabelSpace;
use crate::metrics::{average_precision, column, roc};
use crate::model::{Adam, Classifier, HeadShape, HeadStack, LossKind, LossWeights};
use crate::rng::Rng;
use crate::step::{Batch, TrainStep};

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
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
    /// Joined images this head left out for having none of its labels (`empty = drop`).
    pub dropped: usize,
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

/// Probabilities of head `k` of `stack` on `rows` (feature rows), row-major `rows.len() x M_k`,
/// in chunks of 4096 rows: the same products whatever other heads the stack holds.
fn predict_head(stack: &HeadStack, k: usize, features: &Features, rows: &[usize]) -> Result<Vec<f32>> {
    let m = stack.shapes[k].outputs;
    let mut out = vec![0f32; rows.len() * m];
    let (mut hidden, mut logits) = (Vec::new(), Vec::new());
    features.for_rows(rows, 4096, |x, positions| {
        stack.forward_head(k, x, positions.len(), &mut hidden, &mut logits);
        for (i, &p) in positions.iter().enumerate() {
            for (dst, &z) in out[p * m..(p + 1) * m].iter_mut().zip(&logits[i * m..(i + 1) * m]) {
                *dst = crate::model::sigmoid(z);
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

/// Which jobs train on the same rows: jobs whose label configurations keep the same table rows
/// share one row plan (and one gathered batch per step).
pub fn plan_groups(jobs: &[HeadJob]) -> Vec<usize> {
    let mut keys: Vec<Vec<bool>> = Vec::new();
    jobs.iter()
        .map(|j| {
            let key: Vec<bool> = j.labels.targets.iter().map(Option::is_some).collect();
            keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            })
        })
        .collect()
}

/// Trains `jobs` fused and evaluates each on test. Each job trains on its own rows in its own
/// order — the batches, updates and results it would have trained alone, bit for bit — while
/// the stack shares the loaded embeddings, the batches of jobs with equal rows, and one wake-up
/// of the thread pool per step. A streamed cache fuses only jobs with equal rows.
pub fn train_fused(
    features: &Features,
    joined: &Joined,
    jobs: &[HeadJob],
    settings: &TrainSettings,
    progress: &dyn Progress,
) -> Result<Vec<TrainedHead>> {
    // on a thread of the pool, so that each training step's threads start without waking the
    // calling thread (see `TrainStep::run`)
    rayon::scope(|_| train_fused_on_pool(features, joined, jobs, settings, progress))
}

fn train_fused_on_pool(
    features: &Features,
    joined: &Joined,
    jobs: &[HeadJob],
    settings: &TrainSettings,
    progress: &dyn Progress,
) -> Result<Vec<TrainedHead>> {
    let start = Instant::now();
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if settings.batch_size == 0 || settings.epochs == 0 {
        return Err(TrainError::Config("batch_size and epochs must be positive".into()));
    }
    let group_of = plan_groups(jobs);
    let groups = group_of.iter().max().map_or(0, |g| g + 1);
    // the first job of each group stands for its rows
    let first: Vec<usize> =
        (0..groups).map(|g| group_of.iter().position(|&x| x == g).expect("a member")).collect();
    if features.is_streamed() && groups > 1 {
        return Err(TrainError::Data(
            "a streamed cache trains heads with different rows one stack at a time".into(),
        ));
    }
    let kept = |k: usize| move |tr: usize| jobs[k].labels.targets[tr].is_some();
    let mut plans: Vec<Vec<(usize, usize)>> =
        first.iter().map(|&k| split_rows(joined, Split::Train, &kept(k))).collect();
    if let Some(g) = plans.iter().position(Vec::is_empty) {
        return Err(TrainError::Data(format!(
            "run `{}`: the training split is empty after label selection",
            jobs[first[g]].name
        )));
    }
    let train_rows: Vec<usize> = group_of.iter().map(|&g| plans[g].len()).collect();
    let weights: Vec<LossWeights> = jobs
        .iter()
        .zip(&train_rows)
        .map(|(j, &n)| LossWeights::new(j.loss, n, &j.labels.train_counts))
        .collect();
    let shapes: Vec<HeadShape> =
        jobs.iter().map(|j| HeadShape { hidden: j.hidden, outputs: j.labels.len() }).collect();
    let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
    let mut stack = HeadStack::new(features.dim, &shapes, &seeds);
    let mut best = stack.clone();
    let mut best_score: Vec<Option<f64>> = vec![None; jobs.len()];
    let mut best_epoch = vec![0usize; jobs.len()];
    let mut adam = Adam::new(stack.params.len(), settings.learning_rate, jobs.len());
    let mut grad = vec![0f32; stack.params.len()];

    // validation rows and targets of each group (equal rows, equal splits)
    let val: Vec<Vec<(usize, usize)>> =
        first.iter().map(|&k| split_rows(joined, Split::Val, &kept(k))).collect();
    let val_features: Vec<Vec<usize>> = val.iter().map(|rows| rows.iter().map(|r| r.0).collect()).collect();
    let val_y: Vec<Vec<bool>> =
        jobs.iter().zip(&group_of).map(|(j, &g)| dense_targets(&j.labels, &val[g])).collect();

    let bs = settings.batch_size;
    let steps_per_epoch = plans.iter().map(|p| p.len().div_ceil(bs)).max().unwrap_or(0);
    progress.start("training", (settings.epochs * steps_per_epoch) as u64, "batches");
    // every plan draws its order from the seed as a lone run's would
    let mut rngs: Vec<Rng> = plans.iter().map(|_| Rng::new(settings.seed)).collect();
    let mut history: Vec<Vec<EpochLog>> = vec![Vec::new(); jobs.len()];
    let step = TrainStep::for_pool(&stack);

    for epoch in 1..=settings.epochs {
        let mut loss_sum = vec![0f64; jobs.len()];
        let mut loss_batches = vec![0usize; jobs.len()];
        features.for_each_step_of_epoch(&mut plans, &mut rngs, bs, |step_batches| {
            let mut batches = Vec::with_capacity(step_batches.len());
            let mut index_of = vec![None; step_batches.len()];
            for (g, b) in step_batches.iter().enumerate() {
                if let Some((x, rows)) = b {
                    index_of[g] = Some(batches.len());
                    batches.push(Batch { x, rows: rows.len() });
                }
            }
            let plan_of: Vec<Option<usize>> = group_of.iter().map(|&g| index_of[g]).collect();
            // head k's loss on rows of its batch, normalised by its batch: every row counts
            let loss =
                |k: usize, rows: std::ops::Range<usize>, z: &[f32], dz: &mut [f32], row_loss: &mut [f64]| {
                    let job = &jobs[k];
                    let batch = step_batches[group_of[k]].expect("a head that trains has a batch").1;
                    let m = job.labels.len();
                    let norm = 1.0 / (batch.len() * m) as f32;
                    for (i, r) in batch[rows].iter().enumerate() {
                        let t = job.labels.targets[r.1].as_deref().expect("a plan holds only kept rows");
                        let (z, g) = (&z[i * m..(i + 1) * m], &mut dz[i * m..(i + 1) * m]);
                        let mut pos = t.iter().peekable();
                        let mut l = 0f64;
                        for j in 0..m {
                            let y = pos.next_if(|&&p| p as usize == j).is_some();
                            let (lj, d) = weights[k].loss_and_grad(j, z[j], y);
                            l += f64::from(lj);
                            g[j] = d * norm;
                        }
                        row_loss[i] = l * f64::from(norm);
                    }
                };
            let losses = step.run(&mut stack, &batches, &plan_of, &loss, &mut grad, Some(&mut adam));
            for (k, l) in losses.into_iter().enumerate() {
                if let Some(l) = l {
                    loss_sum[k] += l;
                    loss_batches[k] += 1;
                }
            }
            progress.advance(1);
            Ok(())
        })?;
        // validation: each head on its own rows
        for (k, job) in jobs.iter().enumerate() {
            let m = job.labels.len();
            let p = predict_head(&stack, k, features, &val_features[group_of[k]])?;
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
                train_rows: train_rows[k],
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
        dropped: joined.rows.iter().filter(|r| !kept(r.1)).count(),
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
