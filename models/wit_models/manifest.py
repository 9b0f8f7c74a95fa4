"""Model manifests: what the extractor needs to know about an exported ONNX model.

Every exported model takes ``pixels``: uint8 RGB, NHWC ``[batch, height, width, 3]`` (height and width
dynamic), and applies the normalisation below inside the graph, so the extractor ships 4x fewer bytes
to the device and never re-implements a model's normalisation. Outputs:

* ``embedding`` ``[batch, C]``: global average pool of the last feature map (the penultimate layer);
* ``logits`` ``[batch, 1000]``: ImageNet logits (sanity checks only);
* ``feature_map`` ``[batch, C, h, w]``: the last feature map itself, for ``--pooling flatten``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST_VERSION = 1
OPSET = 17


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(
    onnx_path: Path,
    *,
    name: str,
    family: str,
    weights: str,
    input_size: int,
    crop_fraction: float,
    mean: list[float],
    std: list[float],
    embedding_dim: int,
    num_classes: int,
    interpolation: str = "bilinear",
) -> Path:
    """Writes ``<model>.json`` beside the ONNX file (atomically) and returns its path."""
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "family": family,
        "weights": weights,
        "onnx": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "opset": OPSET,
        "input": {
            "name": "pixels",
            "layout": "NHWC",
            "dtype": "uint8",
            "channels": "RGB",
            "size": input_size,
            "resize": {"policy": "center_crop", "crop_fraction": crop_fraction, "interpolation": interpolation},
            # Applied inside the graph to pixel values in 0..255: (x - mean) / std.
            "mean": mean,
            "std": std,
        },
        "outputs": {
            "embedding": {"name": "embedding", "dim": embedding_dim},
            "logits": {"name": "logits", "classes": num_classes},
            "feature_map": {"name": "feature_map", "channels": embedding_dim, "layout": "NCHW"},
        },
        "embedding_dim": embedding_dim,
    }
    out = onnx_path.with_suffix(".json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out)
    return out
