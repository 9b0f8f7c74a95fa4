#!/usr/bin/env python3
"""Derives a set of distinct photos from the real photographs shipped in scikit-image (random
crops, flips, colour jitter, re-encoding), resized so the long side is --long px.

    make_photo_set.py OUT_DIR --n 600 --long 640 [--format jpg|webp|png]
Writes OUT_DIR/photoNNNNN.<format> and OUT_DIR/manifest.csv (JPEG quality 80-94, lossy WebP
quality 80-94, PNG as Pillow writes it).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from photo_variants import photo_variants  # noqa: E402

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "brick.png", "grass.png", "gravel.png", "color.png"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--long", type=int, default=640)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=["jpg", "webp", "png"], default="jpg")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = ["id,path"]
    for i, (_, c) in enumerate(photo_variants(PHOTOS, a.n, a.long, rng)):
        name = f"photo{i:05d}.{a.format}"
        quality = int(rng.integers(80, 95))
        if a.format == "png":
            c.save(a.out / name)
        else:
            c.save(a.out / name, quality=quality)
        rows.append(f"{name},{(a.out / name).resolve()}")
    (a.out / "manifest.csv").write_text("\n".join(rows) + "\n")
    print(f"wrote {a.n} {a.format} photos (long side {a.long}px) to {a.out}")


if __name__ == "__main__":
    main()
