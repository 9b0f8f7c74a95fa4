//! `report.md`: a run's evaluation for people (tables as the seed's Table I).

use std::fmt::Write as _;

use feature_cache::CacheMetadata;

use crate::config::RunConfig;
use crate::data::JoinStats;
use crate::evaluate::AtThreshold;
use crate::model::Classifier;
use crate::run_dir::TrainingRecord;
use crate::train::TrainedHead;

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
    record: &TrainingRecord,
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
    let fused = match record.fused_with.len() {
        0 | 1 => String::new(),
        n => format!(
            " (shared by the {n} heads trained fused in one stack: {}; each head's result is what it \
             would be alone)",
            record.fused_with.join(", ")
        ),
    };
    let _ = writeln!(
        s,
        "Embeddings: `{}` ({} x {}, {} pooling, {} px). Labels: column `{}`, {} labels. {model}. \
         Training rows: {}. Test images: {}. Training time: {:.1}s on {} threads{fused}.\n",
        embedding.model_identity(),
        embedding.dim,
        embedding.dtype,
        embedding.pooling,
        embedding.input_size,
        config.labels.column,
        t.labels.len(),
        t.train_rows,
        ev.images,
        record.train_seconds,
        record.threads
    );
    let _ = writeln!(
        s,
        "Join: {} embeddings, {} labelled rows, {} joined (train/val/test {}/{}/{}), {} labelled images without embedding.\n",
        join.embeddings, join.labelled, join.joined, join.per_split[0], join.per_split[1], join.per_split[2], join.labels_without_embedding
    );
    if t.dropped > 0 {
        let _ = writeln!(
            s,
            "{} of the {} joined images have none of the chosen labels and were left out of training and \
             evaluation (`empty = \"drop\"`; `empty = \"negative\"` keeps them as negatives for every label).\n",
            t.dropped, join.joined
        );
    }
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
    let unreachable: Vec<&str> = t
        .labels
        .iter()
        .zip(&t.thresholds.precision)
        .filter(|(_, p)| p.is_none())
        .map(|(l, _)| l.as_str())
        .collect();
    if !unreachable.is_empty() {
        let _ = writeln!(
            s,
            "\nNo threshold reaches precision {} on validation for {}: under that policy they have no threshold \
             (`null` in head.json) and predict nothing.",
            t.thresholds.min_precision,
            unreachable.join(", ")
        );
    }
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
