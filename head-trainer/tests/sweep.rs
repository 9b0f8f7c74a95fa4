//! Sweeps: fused training equals separate training, errors name key and line, resume skips.

use std::path::Path;

use feature_cache::{CacheMetadata, EmbeddingDtype, EmbeddingWriter, Pooling};
use head_trainer::config::RunConfig;
use head_trainer::labels::EmptyPolicy;
use head_trainer::rng::Rng;
use head_trainer::run::{train_one, Inputs};
use head_trainer::sweep::run_sweep;
use indicatif::ProgressBar;

/// 3000 images, 32-d, labels a..e with a planted direction each.
fn dataset(dir: &Path) {
    let meta = CacheMetadata {
        model: "synthetic".into(),
        model_sha256: "0".repeat(64),
        dim: 32,
        pooling: Pooling::Avg,
        input_size: 224,
        preprocessing: "none".into(),
        dtype: EmbeddingDtype::F32,
        tool_version: "test".into(),
    };
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    let mut w = EmbeddingWriter::create(dir.join("cache/emb.parquet"), meta).unwrap();
    let mut rng = Rng::new(5);
    let names = ["a", "b", "c", "d", "e"];
    let freq = [0.4, 0.3, 0.2, 0.1, 0.05];
    let dirs: Vec<Vec<f32>> = (0..5).map(|_| (0..32).map(|_| rng.uniform(-1.0, 1.0)).collect()).collect();
    let mut csv = String::from("id,tags\n");
    for i in 0..3000 {
        let mut x: Vec<f32> = (0..32).map(|_| rng.uniform(0.0, 1.0)).collect();
        let mut tags = Vec::new();
        for j in 0..5 {
            if rng.next_f64() < freq[j] {
                tags.push(names[j]);
                x.iter_mut().zip(&dirs[j]).for_each(|(v, d)| *v += 0.5 * d);
            }
        }
        w.push(&format!("i{i}"), &x, 1, 1, None).unwrap();
        csv.push_str(&format!("i{i},{}\n", tags.join("|")));
    }
    w.finish().unwrap();
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

/// `dir/sweep.toml` over the test dataset (3 epochs, empty label sets kept as negatives), with
/// `axes` added to a grid over the `tags` column.
fn write_sweep(dir: &Path, axes: &str) {
    let head = "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[defaults]\ntrain = { epochs = 3 }\n\
                labels = { empty = \"negative\" }\n[grid]\ncolumn = [\"tags\"]\n";
    std::fs::write(dir.join("sweep.toml"), format!("{head}{axes}\n")).unwrap();
}

fn quiet() -> ProgressBar {
    ProgressBar::hidden()
}

#[test]
fn fused_sweep_equals_separate_training() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write_sweep(tmp.path(), "top_k = [3, 5]\nhidden = [16, 32]");
    let out = tmp.path().join("sweep");
    let outcome = run_sweep(&tmp.path().join("sweep.toml"), &out, 16, None, None, &quiet(), &|_| {}).unwrap();
    assert_eq!(outcome.trained.len(), 4);
    assert!(outcome.rows.iter().all(|r| r.fused_with == 4));

    let inputs = Inputs::load(&tmp.path().join("cache"), &tmp.path().join("labels.csv")).unwrap();
    let mut config = RunConfig::for_column("tags");
    config.labels.top_k = Some(5);
    config.labels.empty = EmptyPolicy::Negative;
    config.hidden = 32;
    config.train.epochs = 3;
    let alone = train_one(&inputs, &config, &tmp.path().join("alone"), &quiet()).unwrap();
    let fused = outcome.rows.iter().find(|r| r.run == "tags-top5-h32").unwrap();
    let a = alone.trained.test.macro_.roc_auc.unwrap();
    let f = fused.macro_roc_auc.unwrap();
    assert!((a - f).abs() < 1e-4, "fused {f} vs alone {a}");
    assert!(a > 0.8, "the planted signal is learnt ({a})");

    // resume: nothing left to train, summaries rewritten
    let again = run_sweep(&tmp.path().join("sweep.toml"), &out, 16, None, None, &quiet(), &|_| {}).unwrap();
    assert!(again.trained.is_empty() && again.skipped.len() == 4);
    for f in ["summary.md", "summary.csv", "summary.jsonl", "compare_auc.png", "compare_roc.svg"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
}

#[test]
fn linear_probe_runs_beside_fused_heads_in_a_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write_sweep(tmp.path(), "model = [\"mlp\", \"linear\"]\nhidden = [16, 32]");
    let out = tmp.path().join("sweep");
    let outcome = run_sweep(&tmp.path().join("sweep.toml"), &out, 16, None, None, &quiet(), &|_| {}).unwrap();
    assert_eq!(outcome.trained.len(), 4);
    for r in &outcome.rows {
        let linear = r.classifier == "linear";
        assert_eq!(r.run.contains("-linear-"), linear, "{}", r.run);
        // the two MLPs are fused; each probe is fitted alone
        assert_eq!(r.fused_with, if linear { 1 } else { 2 }, "{}", r.run);
        assert_eq!(r.loss == "logistic", linear);
        assert_eq!(r.hidden == 0, linear);
        // the planted signal is linear: the probe recovers it almost exactly
        let floor = if linear { 0.99 } else { 0.55 };
        assert!(r.macro_roc_auc.unwrap() > floor, "{}: {:?}", r.run, r.macro_roc_auc);
    }
    // the probe has no hidden layer: both hidden sizes give the same model
    let w = |name: &str| std::fs::read(out.join(name).join("head.safetensors")).unwrap();
    assert_eq!(w("tags-all-linear-h16"), w("tags-all-linear-h32"));
    assert_ne!(w("tags-all-mlp-h16"), w("tags-all-mlp-h32"));
    assert!(std::fs::read_to_string(out.join("summary.csv"))
        .unwrap()
        .starts_with("run,embedding_model,column,labels,classifier,"));
}

#[test]
fn bad_sweep_files_name_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let sweep = tmp.path().join("bad.toml");
    std::fs::write(
        &sweep,
        "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[grid]\ncolumn = [\"tags\"]\ntopk = [3]\n",
    )
    .unwrap();
    let err =
        run_sweep(&sweep, &tmp.path().join("o"), 16, None, None, &quiet(), &|_| {}).unwrap_err().to_string();
    assert!(
        err.contains("bad.toml:5") && err.contains("unknown field `topk`") && err.contains("top_k"),
        "{err}"
    );

    std::fs::write(
        &sweep,
        "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[grid]\ncolumn = [\"tags\"]\nloss = [\"hinge\"]\n",
    )
    .unwrap();
    let err =
        run_sweep(&sweep, &tmp.path().join("o"), 16, None, None, &quiet(), &|_| {}).unwrap_err().to_string();
    assert!(err.contains("bad.toml:5") && err.contains("hinge"), "{err}");

    std::fs::write(
        &sweep,
        "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[[run]]\nname = \"x\"\ncolumn = \"tags\"\nlabels = [\"a\", \"bb\"]\n",
    )
    .unwrap();
    let err =
        run_sweep(&sweep, &tmp.path().join("o"), 16, None, None, &quiet(), &|_| {}).unwrap_err().to_string();
    assert!(
        err.contains("run `x`") && err.contains("unknown label `bb`") && err.contains("did you mean: b"),
        "{err}"
    );
}
