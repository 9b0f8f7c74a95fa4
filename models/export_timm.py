#!/usr/bin/env python3
"""Exports timm EfficientNet-B0/B2 (or any timm classifier) to ONNX with the extractor's interface.

    pip install torch timm onnx            # where you have internet (weights come from the HF hub)
    python models/export_timm.py efficientnet_b0 tf_efficientnet_b0 efficientnet_b2 tf_efficientnet_b2
    python models/export_timm.py efficientnet_b0 --random-weights --out /tmp/m   # offline test

`tf_efficientnet_*` are the Keras-ported weights the research used (TF "SAME" padding, BN eps 1e-3);
`efficientnet_*` are timm's own. The graph takes `pixels`: uint8 RGB NHWC [batch, H, W, 3] with
H and W dynamic, applies the model's mean/std inside, and returns `embedding` [batch, C]
(pre-logits, global average pool), `logits` [batch, 1000] and `feature_map` [batch, C, h, w] —
the same as models/convert_lite.py, with a manifest beside each ONNX file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wit_models.manifest import OPSET, write_manifest  # noqa: E402


def build(name: str, random_weights: bool):
    import timm
    import torch

    backbone = timm.create_model(name, pretrained=not random_weights)
    backbone.eval()
    cfg = backbone.pretrained_cfg
    mean = [float(m) * 255.0 for m in cfg.get("mean", (0.485, 0.456, 0.406))]
    std = [float(s) * 255.0 for s in cfg.get("std", (0.229, 0.224, 0.225))]

    class WithInterface(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float()
            x = (x - self.mean) / self.std
            fmap = self.backbone.forward_features(x)
            embedding = fmap.mean(dim=(2, 3))
            logits = self.backbone.get_classifier()(embedding)
            return embedding, logits, fmap

    return WithInterface().eval(), cfg, mean, std


def export(name: str, out_dir: Path, random_weights: bool) -> Path:
    import torch

    model, cfg, mean, std = build(name, random_weights)
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop = float(cfg.get("crop_pct", 0.875))
    interp = str(cfg.get("interpolation", "bilinear"))
    dummy = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    with torch.no_grad():
        emb, logits, _ = model(dummy)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name.replace('_', '-')}.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=["pixels"],
        output_names=["embedding", "logits", "feature_map"],
        dynamic_axes={
            "pixels": {0: "batch", 1: "height", 2: "width"},
            "embedding": {0: "batch"},
            "logits": {0: "batch"},
            "feature_map": {0: "batch", 2: "fh", 3: "fw"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    os.replace(tmp, onnx_path)
    write_manifest(
        onnx_path,
        name=onnx_path.stem,
        family="timm",
        weights=f"timm {name} ({'random init: test only' if random_weights else cfg.get('hf_hub_id') or 'pretrained'})",
        input_size=size,
        crop_fraction=crop,
        mean=mean,
        std=std,
        embedding_dim=int(emb.shape[1]),
        num_classes=int(logits.shape[1]),
        interpolation=interp,
    )
    print(f"{name}: wrote {onnx_path} ({emb.shape[1]}-d embedding, {size} px)")
    return onnx_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", help="timm model names, e.g. efficientnet_b0 tf_efficientnet_b2")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--random-weights", action="store_true", help="no download; for testing the export")
    args = ap.parse_args(argv)
    for name in args.names:
        export(name, args.out, args.random_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
