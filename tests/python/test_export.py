"""Serving what was trained: the exported ONNX topic model (with its backbone, or the head alone) gives
the probabilities of extractor + head-trainer predict; `extractor embed --head` writes the same
predictions in the same pass; a head trained on another model's embeddings is refused by both.

The photos are 256 x 256 PNGs: the model's 0.875 centre crop is then exactly 224 x 224 and needs
no resizing, so Pillow hands onnxruntime the very pixels the extractor feeds the network.
"""

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import MODELS, ROOT, release_binary, skimage_photo

SUBJECTS = {"chelsea.png": "cat", "coffee.png": "cup", "astronaut.png": "person", "rocket.jpg": "rocket",
            "motorcycle_left.png": "motorcycle"}
TOL = 1e-5


def run(*cmd, ok=True):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    images = d / "images"
    images.mkdir()
    rng = np.random.default_rng(4)
    rows = ["id,subject"]
    for name, subject in SUBJECTS.items():
        photo = Image.open(skimage_photo(name)).convert("RGB")
        w, h = photo.size
        for k in range(12):
            side = int(min(w, h) * rng.uniform(0.5, 1.0))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = photo.crop((x, y, x + side, y + side)).resize((256, 256), Image.BICUBIC)
            crop.save(images / f"{subject}{k:02d}.png")
            rows.append(f"{subject}{k:02d}.png,{subject}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    cache = d / "cache"
    run(release_binary("extractor"), "embed", images, "--model", "efficientnet-lite0", "--out", cache, "--device", "cpu",
        "--quiet")
    for name, extra in [("mlp", []), ("probe", ["--model", "linear"])]:
        run(release_binary("head-trainer"), "train", "--embeddings", cache, "--labels", d / "labels.csv", "--out",
            d / name, "--column", "subject", "--epochs", "8", "--gallery", "0", "--quiet", *extra)
        run(release_binary("head-trainer"), "predict", "--head", d / name, "--embeddings", cache, "--out",
            d / f"{name}-predict.parquet", "--quiet")
    return d


def table(path):
    t = pq.read_table(path)
    labels = [c[2:] for c in t.column_names if c.startswith("p:")]
    p = np.stack([t.column(f"p:{l}").to_numpy() for l in labels], axis=1)
    return dict(zip(t.column("id").to_pylist(), p)), labels


def pixels(path):
    """The extractor's network input for a 256 x 256 image: its centre 224 x 224, as uint8 RGB."""
    return np.asarray(Image.open(path).convert("RGB").crop((16, 16, 240, 240)))


@pytest.mark.parametrize("head", ["mlp", "probe"])
def test_the_exported_model_with_its_backbone_equals_extractor_and_predict(setup, head, tmp_path):
    d = setup
    out = tmp_path / "topics.onnx"
    run(release_binary("head-trainer"), "export", d / head, "--backbone", "efficientnet-lite0", "--out", out)
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    labels = json.loads(meta["wit.labels"])
    thresholds = json.loads(meta["wit.thresholds"])
    assert len(thresholds["f1"]) == len(labels) and "min_precision" in thresholds
    assert json.loads(meta["wit.input"])["size"] == 224 and json.loads(meta["wit.input"])["layout"] == "NHWC"
    assert json.loads(meta["wit.embedding"])["model"] == "efficientnet-lite0"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "embedding"]
    expected, predict_labels = table(d / f"{head}-predict.parquet")
    assert predict_labels == labels
    ids = sorted(expected)
    probs, emb = sess.run(None, {"pixels": np.stack([pixels(d / "images" / i) for i in ids])})
    worst = max(np.abs(probs[k] - expected[i]).max() for k, i in enumerate(ids))
    assert worst <= TOL, f"probabilities differ from predict by {worst}"
    # the second output is the embedding, before the f16 rounding the cache applies
    cache = pq.read_table(d / "cache")
    stored = dict(zip(cache.column("id").to_pylist(),
                      cache.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(cache), -1)))
    for k, i in enumerate(ids):
        assert np.array_equal(emb[k].astype(np.float16), stored[i]), i


def test_the_exported_head_alone_equals_predict(setup, tmp_path):
    d = setup
    out = tmp_path / "head.onnx"
    run(release_binary("head-trainer"), "export", d / "mlp", "--out", out)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["embedding"]
    cache = pq.read_table(d / "cache")
    x = cache.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(cache), -1).astype(np.float32)
    (probs,) = sess.run(None, {"embedding": x})
    expected, _ = table(d / "mlp-predict.parquet")
    worst = max(np.abs(p - expected[i]).max() for i, p in zip(cache.column("id").to_pylist(), probs))
    assert worst <= TOL, worst


def test_labels_in_the_same_pass_equal_predict_and_resume(setup, tmp_path):
    d = setup
    out = tmp_path / "cache"
    cmd = [release_binary("extractor"), "embed", d / "images", "--model", "efficientnet-lite0", "--out", out,
           "--device", "cpu", "--quiet", "--part-size", "25", "--head", d / "mlp", "--head", d / "probe"]
    run(*cmd)
    for head in ["mlp", "probe"]:
        folder = out / "_heads" / head
        parts = sorted(folder.glob("pred-*.parquet"))
        assert len(parts) == 3, parts  # 60 images, parts of 25
        got, labels = table(folder)
        expected, _ = table(d / f"{head}-predict.parquet")
        assert sorted(got) == sorted(expected)
        assert max(np.abs(got[i] - expected[i]).max() for i in got) <= 1e-6
        assert json.loads(pq.read_schema(parts[0]).metadata[b"wit.head"])["name"] == head
    # a lost predictions part (a crash between the two files) is made again from the cache
    lost = sorted((out / "_heads" / "mlp").glob("pred-*.parquet"))[1]
    before = pq.read_table(lost)
    lost.unlink()
    proc = run(*cmd)
    assert "computed 1 predictions parts" in proc.stderr and pq.read_table(lost).equals(before)
    # the cache itself is still one table without the predictions
    assert pq.read_table(out).num_rows == 60


def test_a_head_of_another_model_is_refused_by_both(setup, tmp_path):
    d = setup
    proc = run(release_binary("head-trainer"), "export", d / "mlp", "--backbone", "efficientnet-lite2", "--out",
               tmp_path / "x.onnx", ok=False)
    assert proc.returncode != 0 and "is not the model head `mlp` was trained on" in proc.stderr, proc.stderr
    proc = run(release_binary("extractor"), "embed", d / "images", "--model", "efficientnet-lite2", "--out",
               tmp_path / "c", "--device", "cpu", "--quiet", "--head", d / "mlp", ok=False)
    assert proc.returncode != 0, proc.stdout
    assert "--head" in proc.stderr and "model = efficientnet-lite2" in proc.stderr, proc.stderr
    assert not (MODELS / "x.onnx").exists()


def test_the_readme_serving_example_works_as_written(setup, tmp_path, monkeypatch, capsys):
    """README, "Serving a head": the 10-line example labels one image as extractor + predict do."""
    d = setup
    text = (ROOT / "README.md").read_text()
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "topics.onnx" in b]
    assert len(snippet.strip().splitlines()) <= 10
    run(release_binary("head-trainer"), "export", d / "mlp", "--backbone", "efficientnet-lite0",
        "--out", tmp_path / "topics.onnx")
    # a 256 x 256 image: the 0.875 centre crop is 224 x 224 whole pixels, so Pillow's resize is exact
    image = "cat03.png"
    (tmp_path / "photo.jpg").symlink_to(d / "images" / image)
    monkeypatch.chdir(tmp_path)
    env = {}
    exec(compile(snippet, "README.md", "exec"), env)
    expected, labels = table(d / "mlp-predict.parquet")
    assert env["labels"] == labels
    worst = np.abs(env["probs"][0] - expected[image]).max()
    assert worst <= TOL, f"the README example differs from predict by {worst}"
    shown = capsys.readouterr().out
    assert "cat" in shown, shown
