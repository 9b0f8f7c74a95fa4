#!/usr/bin/env python3
"""A set of large JPEGs with real high-frequency detail, as Commons originals have: random crops
(70-100% of each side, flipped at random) of the 2560-5640 px photographs and artwork that
Debian's wallpaper packages ship (mate-backgrounds, plasma-workspace-wallpapers,
ukui-wallpapers; fetched with apt-get download into .cache/debs), downscaled (never enlarged)
to a long side of --long px and re-encoded as JPEG at quality 85-95, 4:2:0, a quarter of them
progressive.

    make_originals_set.py OUT_DIR --n 150 --long 2048
Writes OUT_DIR/origNNNNN.jpg and OUT_DIR/manifest.csv.
"""

import argparse
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = ["mate-backgrounds", "plasma-workspace-wallpapers", "ukui-wallpapers"]
ROOT = Path(__file__).resolve().parents[2]


def sources(min_long: int) -> list[Path]:
    debs, unpack = ROOT / ".cache/debs", ROOT / ".cache/unpack-wallpapers"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    if not unpack.exists():
        tmp = unpack.with_suffix(".tmp")
        for deb in sorted(debs.glob("*.deb")):
            if any(deb.name.startswith(p + "_") for p in PACKAGES):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(unpack)
    seen, out = set(), []
    for p in sorted(unpack.rglob("*.jpg")):
        real = p.resolve()  # the plasma packages link every screen size to one file
        if real in seen or not real.exists():
            continue
        seen.add(real)
        with Image.open(real) as im:
            if max(im.size) >= min_long:
                out.append(real)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--long", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    srcs = sources(a.long)
    if not srcs:
        raise SystemExit(f"no wallpaper of at least {a.long} px")
    a.out.mkdir(parents=True, exist_ok=True)
    rows = ["id,path"]
    for i in range(a.n):
        with Image.open(srcs[i % len(srcs)]) as im:
            im = im.convert("RGB")
        w, h = im.size
        s = a.long / max(w, h)
        # a crop that still has a long side of at least --long px
        fw = rng.uniform(max(0.7, s), 1.0)
        fh = rng.uniform(max(0.7, s), 1.0)
        cw, ch = int(w * fw), int(h * fh)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        c = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            c = c.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        s = a.long / max(c.size)
        if s < 1:
            c = c.resize((max(1, round(c.size[0] * s)), max(1, round(c.size[1] * s))), Image.LANCZOS)
        name = f"orig{i:05d}.jpg"
        c.save(a.out / name, quality=int(rng.integers(85, 96)), progressive=bool(rng.random() < 0.25))
        rows.append(f"{name},{(a.out / name).resolve()}")
    (a.out / "manifest.csv").write_text("\n".join(rows) + "\n")
    print(f"wrote {a.n} JPEGs (long side {a.long} px) from {len(srcs)} wallpapers to {a.out}")


if __name__ == "__main__":
    main()
