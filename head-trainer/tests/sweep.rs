//! Sweeps: a run's result is its own (alone or in any sweep, any `--max-fused`, either empty
//! policy: the same bits), resume and its refusals, errors naming key and line, the summary.

use std::path::Path;

use feature_cache::{CacheMetadata, EmbeddingDtype, EmbeddingWriter, Pooling, Silent};
use head_trainer::config::RunConfig;
use head_trainer::labels::EmptyPolicy;
use head_trainer::rng::Rng;
use head_trainer::run::{train_one, Inputs};
use head_trainer::sweep::{run_sweep, SweepOptions};

/// 3000 images, 32-d, labels a..e with a planted direction each; a fifth of the images has no
/// label at all, so `drop` and `negative` train on different rows.
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

const HEADER: &str = "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[defaults]\ntrain = { epochs = 3 }\n";

fn sweep(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{HEADER}{body}\n")).unwrap();
    path
}

fn options(max_fused: usize) -> SweepOptions {
    SweepOptions { max_fused, ..SweepOptions::default() }
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_run_is_the_same_alone_and_in_any_sweep_with_either_empty_policy() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let inputs = Inputs::load(&tmp.path().join("cache"), &tmp.path().join("labels.csv")).unwrap();
    for empty in ["drop", "negative"] {
        // the watched run: top-3 labels of `tags`
        let mut config = RunConfig::for_column("tags");
        config.labels.top_k = Some(3);
        config.labels.empty = empty.parse::<EmptyPolicy>().unwrap();
        config.train.epochs = 3;
        let alone = tmp.path().join(format!("alone-{empty}")).join("watched");
        train_one(&inputs, &config, &alone, &Default::default(), &Silent).unwrap();
        let watched =
            format!("[[run]]\nname = \"watched\"\ncolumn = \"tags\"\ntop_k = 3\nempty = \"{empty}\"\n");
        // two sweeps of other compositions: beside heads of other label sets (other rows under
        // `drop`), other widths and losses, other seeds; fused in one stack or in stacks of two
        let first = sweep(
            tmp.path(),
            &format!("first-{empty}"),
            &format!(
                "{watched}[[run]]\nname = \"all\"\ncolumn = \"tags\"\nempty = \"{empty}\"\n\
                 [[run]]\nname = \"ab\"\ncolumn = \"tags\"\nlabels = [\"a\", \"b\"]\nhidden = 48\nempty = \"{empty}\"\n"
            ),
        );
        let second = sweep(
            tmp.path(),
            &format!("second-{empty}"),
            &format!(
                "[[run]]\nname = \"e\"\ncolumn = \"tags\"\nlabels = [\"e\"]\nloss = \"bce\"\nempty = \"{empty}\"\n\
                 [[run]]\nname = \"cd\"\ncolumn = \"tags\"\nlabels = [\"c\", \"d\"]\nhidden = 64\nempty = \"{empty}\"\n\
                 {watched}[[run]]\nname = \"wide\"\ncolumn = \"tags\"\ntop_k = 3\nhidden = 256\nempty = \"{empty}\"\n"
            ),
        );
        for (file, max_fused) in [(&first, 16), (&second, 2), (&second, 1)] {
            let out = tmp
                .path()
                .join(format!("out-{empty}-{max_fused}-{}", file.file_stem().unwrap().to_string_lossy()));
            let outcome = run_sweep(file, &out, options(max_fused), &Silent).unwrap();
            assert!(outcome.trained.contains(&"watched".to_string()));
            for f in ["head.safetensors", "metrics.json"] {
                assert!(
                    bytes(&alone.join(f)) == bytes(&out.join("watched").join(f)),
                    "{empty}, {}, --max-fused {max_fused}: {f} differs from the run trained alone",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn resume_skips_finished_runs_refuses_changed_ones_and_removes_stale_attempts() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = sweep(tmp.path(), "s", "[grid]\ncolumn = [\"tags\"]\ntop_k = [2, 3]\nhidden = [16, 32]");
    let out = tmp.path().join("out");
    let first = run_sweep(&file, &out, options(16), &Silent).unwrap();
    assert_eq!(first.trained.len(), 4);
    assert!(first.rows.iter().all(|r| r.fused_with == 4));
    let summary = std::fs::read_to_string(out.join("summary.jsonl")).unwrap();

    // stale temporaries of a killed attempt at a run (that run's directory gone) and of a killed
    // summary write
    std::fs::remove_dir_all(out.join("tags-top2-h16")).unwrap();
    std::fs::create_dir(out.join(".tags-top2-h16.AbCdEfGhIj.tmp")).unwrap();
    std::fs::write(out.join(".summary.csv.KlMnOpQrSt.tmp"), "half").unwrap();
    let again = run_sweep(&file, &out, options(16), &Silent).unwrap();
    assert_eq!((again.trained.len(), again.skipped.len()), (1, 3));
    assert!(!out.join(".tags-top2-h16.AbCdEfGhIj.tmp").exists());
    assert!(!out.join(".summary.csv.KlMnOpQrSt.tmp").exists());
    let strip = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("train_seconds");
                o.remove("fused_with");
                v
            })
            .collect()
    };
    assert_eq!(strip(&std::fs::read_to_string(out.join("summary.jsonl")).unwrap()), strip(&summary));

    // [defaults] edited: the finished runs are refused, naming the change
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("epochs = 3", "epochs = 4"))
        .unwrap();
    let err = run_sweep(&file, &out, options(16), &Silent).unwrap_err().to_string();
    assert!(err.contains("run `tags-top2-h16`") && err.contains("train.epochs: 3 -> 4"), "{err}");
    assert!(err.contains("remove that directory"), "{err}");

    // a directory that is not a finished run (an older head-trainer interrupted there)
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("epochs = 4", "epochs = 3"))
        .unwrap();
    std::fs::remove_file(out.join("tags-top3-h32").join("metrics.json")).unwrap();
    let err = run_sweep(&file, &out, options(16), &Silent).unwrap_err().to_string();
    assert!(err.contains("is not a finished run (no metrics.json)"), "{err}");
}

#[test]
fn shards_train_their_runs_and_the_final_run_writes_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = sweep(tmp.path(), "s", "[grid]\ncolumn = [\"tags\"]\ntop_k = [2, 3, 4]");
    let out = tmp.path().join("out");
    let mut trained = Vec::new();
    for index in 0..2 {
        let shard = Some(feature_cache::Shard { index, count: 2 });
        let o = run_sweep(&file, &out, SweepOptions { shard, ..options(16) }, &Silent).unwrap();
        assert!(!out.join("summary.csv").exists(), "a shard writes no summary");
        trained.extend(o.trained);
    }
    trained.sort();
    assert_eq!(trained, ["tags-top2", "tags-top3", "tags-top4"]);
    let last = run_sweep(&file, &out, options(16), &Silent).unwrap();
    assert_eq!((last.trained.len(), last.skipped.len(), last.rows.len()), (0, 3, 3));
    assert_eq!(std::fs::read_to_string(out.join("summary.csv")).unwrap().lines().count(), 4);
}

#[test]
fn linear_probe_runs_beside_fused_heads_in_a_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = sweep(
        tmp.path(),
        "s",
        "labels = { empty = \"negative\" }\n[grid]\ncolumn = [\"tags\"]\nmodel = [\"mlp\", \"linear\"]\nhidden = [16, 32]",
    );
    let out = tmp.path().join("sweep");
    let outcome = run_sweep(&file, &out, options(16), &Silent).unwrap();
    assert_eq!(outcome.trained.len(), 4);
    for r in &outcome.rows {
        let linear = r.classifier == "linear";
        assert_eq!(r.run.contains("-linear-"), linear, "{}", r.run);
        // the two MLPs are fused; each probe is fitted alone
        assert_eq!(r.fused_with, if linear { 1 } else { 2 }, "{}", r.run);
        assert!(!linear || r.loss == "bce", "{}: the probe fits the unweighted logistic loss", r.run);
        assert_eq!(r.hidden == 0, linear);
        // the planted signal is linear: the probe recovers it almost exactly
        let floor = if linear { 0.99 } else { 0.55 };
        assert!(r.macro_roc_auc.unwrap() > floor, "{}: {:?}", r.run, r.macro_roc_auc);
    }
    // the probe has no hidden layer: both hidden sizes give the same model
    let w = |name: &str| bytes(&out.join(name).join("head.safetensors"));
    assert_eq!(w("tags-all-linear-h16"), w("tags-all-linear-h32"));
    assert_ne!(w("tags-all-mlp-h16"), w("tags-all-mlp-h32"));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.starts_with("run,embedding_model,column,labels,classifier,"));
    assert_eq!(csv.lines().count(), 5);
}

#[test]
fn a_comma_in_a_run_name_is_quoted_in_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = sweep(
        tmp.path(),
        "s",
        "[[run]]\nname = \"a, b and c\"\ncolumn = \"tags\"\nlabels = [\"a\", \"b\", \"c\"]",
    );
    let out = tmp.path().join("o");
    run_sweep(&file, &out, options(16), &Silent).unwrap();
    let mut reader = csv::Reader::from_path(out.join("summary.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], "a, b and c");
    assert_eq!(&rows[0][3], "3");
}

#[test]
fn bad_sweep_files_name_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let sweep = tmp.path().join("bad.toml");
    let run = |text: &str| {
        std::fs::write(&sweep, text).unwrap();
        run_sweep(&sweep, &tmp.path().join("o"), options(16), &Silent).unwrap_err().to_string()
    };
    let err =
        run("embeddings = \"cache\"\nlabels = \"labels.csv\"\n[grid]\ncolumn = [\"tags\"]\ntopk = [3]\n");
    assert!(
        err.contains("bad.toml:5") && err.contains("unknown field `topk`") && err.contains("top_k"),
        "{err}"
    );
    let err = run(
        "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[grid]\ncolumn = [\"tags\"]\nloss = [\"hinge\"]\n",
    );
    assert!(err.contains("bad.toml:5") && err.contains("hinge"), "{err}");
    let err = run(
        "embeddings = \"cache\"\nlabels = \"labels.csv\"\n[[run]]\nname = \"x\"\ncolumn = \"tags\"\nlabels = [\"a\", \"bb\"]\n",
    );
    assert!(
        err.contains("run `x`") && err.contains("unknown label `bb`") && err.contains("did you mean: b"),
        "{err}"
    );
    let err =
        run("embeddings = \"cache\"\nlabels = \"labels.csv\"\n[grid]\ncolumn = [\"tags\"]\ntop_k = [0]\n");
    assert!(err.contains("run `tags-top0`") && err.contains("top_k = 0"), "{err}");
}
