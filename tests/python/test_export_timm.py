"""models/export_timm.py with random weights: the ONNX file has the extractor's interface, matches
torch, and the extractor embeds with it (1280-d B0, 1408-d B2; 5120/5632-d seed features at 64 px).

torch and timm are not part of scripts/setup (multi-GB); this test runs with the Python named by
WIT_TORCH_PYTHON, or .venv-bench/bin/python (see BENCHMARKS.md), and is skipped, saying so, without one.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import ROOT, read_cache, release_binary, skimage_photo

TORCH_PY = Path(os.environ.get("WIT_TORCH_PYTHON", ROOT / ".venv-bench/bin/python"))


def have_torch() -> bool:
    if not TORCH_PY.exists():
        return False
    return subprocess.run([str(TORCH_PY), "-c", "import torch, timm"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not have_torch(), reason=f"no torch+timm at {TORCH_PY} (set WIT_TORCH_PYTHON)")

CHECK = r"""
import sys, json, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from export_timm import build
torch.manual_seed(0)
model, cfg, mean, std = build(sys.argv[2], True)
"""


@pytest.mark.parametrize("name,dim", [("efficientnet_b0", 1280), ("efficientnet_b2", 1408)])
def test_export_random_weights(tmp_path, name, dim):
    out = tmp_path / "models"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    script = f"""
import sys, torch
sys.path.insert(0, {str(ROOT / 'models')!r})
torch.manual_seed(0)
import export_timm
export_timm.export({name!r}, __import__('pathlib').Path({str(out)!r}), True)
# the same model again (same seed) on fixed pixels, for comparison with ONNX Runtime
torch.manual_seed(0)
model, *_ = export_timm.build({name!r}, True)
import numpy as np
x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))
with torch.no_grad():
    e, l, f = model(x)
np.save({str(tmp_path / 'torch_emb.npy')!r}, e.numpy())
"""
    x = (np.random.default_rng(0).random((2, 96, 80, 3)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([str(TORCH_PY), "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = name.replace("_", "-")
    manifest = json.loads((out / f"{stem}.json").read_text())
    assert manifest["embedding_dim"] == dim and manifest["input"]["dtype"] == "uint8"
    sess = ort.InferenceSession(str(out / f"{stem}.onnx"), providers=["CPUExecutionProvider"])
    emb, logits, fmap = sess.run(["embedding", "logits", "feature_map"], {"pixels": x})
    assert emb.shape == (2, dim) and logits.shape == (2, 1000) and fmap.shape[:2] == (2, dim)
    np.testing.assert_allclose(emb, np.load(tmp_path / "torch_emb.npy"), atol=1e-4, rtol=1e-4)

    # the extractor uses the exported manifest; the seed's 64 px flatten features are 2x2xC
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "cat.png").write_bytes(skimage_photo("chelsea.png").read_bytes())
    cache = tmp_path / "cache"
    proc = subprocess.run([str(release_binary("extractor")), "embed", str(imgs), "--model", str(out / f"{stem}.json"),
                           "--out", str(cache), "--pooling", "flatten", "--input-size", "64", "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    _, e, meta = read_cache(cache)
    assert e.shape == (1, 4 * dim) and meta[b"wit.model"].decode() == stem
