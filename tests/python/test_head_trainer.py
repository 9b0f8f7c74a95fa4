"""head-trainer's metrics equal scikit-learn's definitions; runs repeat exactly; predict refuses
embeddings of another model."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

from conftest import ROOT, release_binary

TOL = 1e-6


def synth(out, n=6000, dim=64, labels=6, seed=0):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_synthetic_cache.py"), str(out), "--n", str(n), "--dim", str(dim),
         "--labels", str(labels), "--seed", str(seed), "--signal", "0.35"],
        check=True, capture_output=True,
    )
    return out


def train(cache, labels, out, *extra):
    cmd = [str(release_binary("head-trainer")), "train", "--embeddings", str(cache), "--labels", str(labels),
           "--out", str(out), "--quiet", *map(str, extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = synth(tmp_path_factory.mktemp("synth"))
    # add a label that only training images carry, with an explicit split column
    t = pq.read_table(d / "labels.parquet").to_pylist()
    n = len(t)
    for i, row in enumerate(t):
        row["split"] = "train" if i < 0.7 * n else ("val" if i < 0.8 * n else "test")
        if i % 50 == 0 and row["split"] == "train":
            row["topics"] = row["topics"] + ["rare"]
    pq.write_table(pa.Table.from_pylist(t), d / "labels_split.parquet")
    return d


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    metrics = train(dataset / "cache", dataset / "labels_split.parquet", out, "--column", "topics", "--epochs", "4",
                    "--empty", "negative")
    return out, metrics


def test_metrics_equal_sklearn(run):
    out, metrics = run
    pred = pq.read_table(out / "predictions.parquet").to_pydict()
    ev = metrics["test"]
    labels = [l["label"] for l in ev["labels"]]
    P = np.stack([np.asarray(pred[f"p:{l}"]) for l in labels], axis=1).astype(np.float64)
    Y = np.stack([np.asarray(pred[f"y:{l}"]) for l in labels], axis=1).astype(int)
    assert ev["images"] == len(pred["id"])
    has_pos = Y.sum(axis=0) > 0
    for j, lm in enumerate(ev["labels"]):
        assert lm["support"] == Y[:, j].sum()
        if not has_pos[j]:
            assert lm["roc_auc"] is None and lm["pr_auc"] is None
            continue
        assert abs(lm["roc_auc"] - roc_auc_score(Y[:, j], P[:, j])) < TOL
        assert abs(lm["pr_auc"] - average_precision_score(Y[:, j], P[:, j])) < TOL
        for key in ("at_0_5", "at_f1", "at_precision"):
            t = lm[key]["threshold"]
            yhat = P[:, j] >= t if t is not None else np.zeros(len(P), bool)
            p, r, f, _ = precision_recall_fscore_support(Y[:, j], yhat, average="binary", zero_division=0)
            assert abs(lm[key]["precision"] - p) < TOL and abs(lm[key]["recall"] - r) < TOL and abs(lm[key]["f1"] - f) < TOL
            assert lm[key]["recall_fraction"] == f"{int((yhat & (Y[:, j] == 1)).sum())}/{Y[:, j].sum()}"
    cols = np.flatnonzero(has_pos)
    assert abs(ev["micro"]["roc_auc"] - roc_auc_score(Y, P, average="micro")) < TOL
    assert abs(ev["micro"]["pr_auc"] - average_precision_score(Y, P, average="micro")) < TOL
    assert abs(ev["macro_"]["roc_auc"] - roc_auc_score(Y[:, cols], P[:, cols], average="macro")) < TOL
    assert abs(ev["macro_"]["pr_auc"] - average_precision_score(Y[:, cols], P[:, cols], average="macro")) < TOL
    th = np.array(metrics["thresholds"]["f1"])
    yhat = P >= th
    for avg, key in (("micro", "micro"), ("macro", "macro_")):
        sel = slice(None) if avg == "micro" else cols
        p, r, f, _ = precision_recall_fscore_support(Y[:, sel], yhat[:, sel], average=avg, zero_division=0)
        got = ev[key]["at_f1"]
        assert abs(got["precision"] - p) < TOL and abs(got["recall"] - r) < TOL and abs(got["f1"] - f) < TOL
    assert abs(ev["micro"]["at_f1"]["labels_per_image"] - yhat.sum(axis=1).mean()) < TOL
    assert abs(ev["true_labels_per_image"] - Y.sum(axis=1).mean()) < TOL


def test_label_without_test_positives_is_reported_not_nan(run):
    out, metrics = run
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert metrics["test"]["labels_without_positives"] == ["rare"]
    assert "left out of macro averages): rare" in (out / "report.md").read_text()


def test_head_beats_chance_and_writes_every_artefact(run):
    out, metrics = run
    assert metrics["test"]["macro_"]["roc_auc"] > 0.6  # weak planted signal (0.35), 4 epochs; chance is 0.5
    for name in ["metrics.json", "report.md", "head.safetensors", "head.json", "predictions.parquet",
                 "roc.png", "roc.svg", "pr.png", "pr.svg", "training.png", "training.svg", "labels.png", "labels.svg"]:
        assert (out / name).stat().st_size > 0, name


def test_rerun_is_identical(dataset, run, tmp_path):
    out, metrics = run
    # the same run name: metrics.json holds nothing that depends on the machine's speed
    again_dir = tmp_path / out.name
    again = train(dataset / "cache", dataset / "labels_split.parquet", again_dir, "--column", "topics",
                  "--epochs", "4", "--empty", "negative")
    assert "train_seconds" not in again and again == metrics
    for f in ["metrics.json", "head.safetensors"]:
        assert (again_dir / f).read_bytes() == (out / f).read_bytes(), f
    assert json.loads((again_dir / "training.json").read_text())["train_seconds"] > 0
    # a run directory is never overwritten by accident
    proc = subprocess.run([str(release_binary("head-trainer")), "train", "--embeddings", str(dataset / "cache"),
                           "--labels", str(dataset / "labels_split.parquet"), "--out", str(again_dir),
                           "--column", "topics", "--quiet"], capture_output=True, text=True)
    assert proc.returncode != 0 and "already exists" in proc.stderr and "--overwrite" in proc.stderr


def test_predict_and_model_identity_check(dataset, run, tmp_path):
    out, _ = run
    pred = tmp_path / "p.parquet"
    proc = subprocess.run([str(release_binary("head-trainer")), "predict", "--head", str(out), "--embeddings",
                           str(dataset / "cache"), "--out", str(pred)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    t = pq.read_table(pred)
    assert t.num_rows == 6000 and "p:rare" in t.column_names
    # the table says which head wrote it: labels, thresholds per policy, configuration, embeddings
    meta = t.schema.metadata
    head = json.loads(meta[b"wit.head"])
    assert json.loads(meta[b"wit.labels"]) == head["labels"] == [c[2:] for c in t.column_names[1:]]
    assert meta[b"wit.embedding_model"].decode().startswith("synthetic@")
    assert len(head["thresholds"]["f1"]) == len(head["labels"]) and head["config"]["labels"]["column"] == "topics"
    assert json.loads(pq.read_schema(out / "predictions.parquet").metadata[b"wit.labels"]) == head["labels"]
    # the test rows' probabilities equal those in the run's predictions.parquet
    test = pq.read_table(out / "predictions.parquet").to_pydict()
    full = dict(zip(t.column("id").to_pylist(), t.column("p:topic00").to_pylist()))
    np.testing.assert_allclose([full[i] for i in test["id"]], test["p:topic00"], atol=1e-6)

    other = synth(tmp_path / "other", n=100, seed=7)
    proc = subprocess.run([str(release_binary("head-trainer")), "predict", "--head", str(out), "--embeddings",
                           str(other / "cache"), "--out", str(tmp_path / "x.parquet")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "model_sha256" in proc.stderr and "extract them with the head's model" in proc.stderr


def test_unknown_label_lists_close_matches(dataset, tmp_path):
    cmd = [str(release_binary("head-trainer")), "train", "--embeddings", str(dataset / "cache"), "--labels",
           str(dataset / "labels.parquet"), "--out", str(tmp_path / "x"), "--column", "topics",
           "--labels-list", "topic01,topc02", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "unknown label `topc02` in column `topics`; did you mean: topic02" in proc.stderr


def test_linear_probe_equals_sklearn_logistic_regression(dataset, tmp_path):
    """The linear probe is scikit-learn's LogisticRegression(C = 1/alpha) on the same training rows,
    one per label; `predict` applies it the same way; its metrics go through the same evaluation."""
    out = tmp_path / "probe"
    metrics = train(dataset / "cache", dataset / "labels_split.parquet", out, "--column", "topics", "--empty",
                    "negative", "--model", "linear", "--probe-alpha", "2", "--probe-max-iterations", "500")
    info = json.loads((out / "head.json").read_text())
    assert info["model"] == "linear" and info["shape"]["hidden"] == 0
    # head.json states what was fitted: no hidden layer, the unweighted logistic loss
    assert (info["config"]["hidden"], info["config"]["loss"]) == (0, "bce")
    labels = info["labels"]
    cache = pq.read_table(dataset / "cache")
    ids = cache.column("id").to_pylist()
    X = np.asarray(cache.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                   np.float64).reshape(len(ids), -1)
    rows = {r["id"]: r for r in pq.read_table(dataset / "labels_split.parquet").to_pylist()}
    train_mask = np.array([rows[i]["split"] == "train" for i in ids])
    pred = pq.read_table(out / "predictions.parquet").to_pydict()
    index = {i: k for k, i in enumerate(ids)}
    test_idx = [index[i] for i in pred["id"]]
    from sklearn.linear_model import LogisticRegression
    for label in labels:
        y = np.array([label in rows[i]["topics"] for i in ids])
        lr = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(X[train_mask], y[train_mask])
        expected = lr.predict_proba(X[test_idx])[:, 1]
        got = np.asarray(pred[f"p:{label}"])
        assert np.abs(got - expected).max() < 5e-3, label
        assert np.abs(got - expected).mean() < 5e-4, label
    assert metrics["best_epoch"] == 0 and metrics["history"] == []
    assert metrics["test"]["macro_"]["roc_auc"] > 0.6
    assert not (out / "training.png").exists() and (out / "roc.png").exists()
    assert "linear probe (linfa logistic regression" in (out / "report.md").read_text()
    # predict reloads the probe from head.safetensors (tensors w, b)
    p = tmp_path / "p.parquet"
    proc = subprocess.run([str(release_binary("head-trainer")), "predict", "--head", str(out), "--embeddings",
                           str(dataset / "cache"), "--out", str(p)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    full = dict(zip(*pq.read_table(p).select(["id", f"p:{labels[0]}"]).to_pydict().values()))
    np.testing.assert_allclose([full[i] for i in pred["id"]], pred[f"p:{labels[0]}"], atol=1e-6)


def test_what_a_user_should_know_is_said_on_the_terminal(dataset, tmp_path):
    def run(*extra, labels=dataset / "labels.parquet"):
        cmd = [str(release_binary("head-trainer")), "train", "--embeddings", str(dataset / "cache"), "--labels",
               str(labels), "--out", str(tmp_path / f"r{len(list(tmp_path.iterdir()))}"), "--column", "topics",
               "--epochs", "1", "--quiet", *extra]
        return subprocess.run(cmd, capture_output=True, text=True)

    # labelled ids the cache lacks: how many, and a few of them
    t = pq.read_table(dataset / "labels.parquet").to_pylist()
    extra = [{"id": f"not-extracted-{i}", "topics": ["topic00"]} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(t + extra), tmp_path / "more.parquet")
    proc = run(labels=tmp_path / "more.parquet")
    assert proc.returncode == 0, proc.stderr
    assert "3 of 6003 labelled ids have no embedding in the cache (e.g. not-extracted-0, not-extracted-1" in proc.stderr
    # settings that cannot train are refused by name, before any work
    for extra_args, message in [
        (["--hidden", "0"], "hidden = 0"),
        (["--top-k", "0"], "top_k = 0"),
        (["--probe-alpha", "2"], "--probe-alpha and --probe-max-iterations set the linear probe"),
        (["--labels-list", "topic00,rare", "--min-count", "100"], "fewer than 100 training images: rare (84 training"),
    ]:
        proc = run(*extra_args, labels=dataset / "labels_split.parquet")
        assert proc.returncode != 0 and message in proc.stderr, (extra_args, proc.stderr)
        assert "panicked" not in proc.stderr
