#!/usr/bin/env python3
"""Derives a set of distinct photos from the real photographs shipped in scikit-image (random
crops, flips, colour jitter, re-encoding), resized so the long side is --long px.

    make_photo_set.py OUT_DIR --n 600 --long 640 [--format jpg|webp|png]
Writes OUT_DIR/photoNNNNN.<format> and OUT_DIR/manifest.csv (JPEG quality 80-94, lossy WebP
quality 80-94, PNG as Pillow writes it).
"""

import argparse
from pathlib import Path

import numpy as np
import skimage
from PIL import Image, ImageEnhance

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
    data = Path(skimage.__file__).parent / "data"
    srcs = [Image.open(data / p).convert("RGB") for p in PHOTOS if (data / p).exists()]
    a.out.mkdir(parents=True, exist_ok=True)
    rows = ["id,path"]
    for i in range(a.n):
        im = srcs[i % len(srcs)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        c = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            c = c.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        c = ImageEnhance.Color(c).enhance(rng.uniform(0.7, 1.3))
        s = a.long / max(c.size)
        c = c.resize((max(1, round(c.size[0] * s)), max(1, round(c.size[1] * s))), Image.BICUBIC)
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
