#!/usr/bin/env python3
"""The decode-and-preprocess stage a user would write in Python: a process pool of Pillow workers,
each opening an image with draft() (libjpeg-turbo's DCT-domain downscaling for JPEG), resizing
the short side to 256 (bilinear) and cropping the centre 224 x 224, returned as a uint8 array to
the parent (as a PyTorch DataLoader does). Nothing else: no model.

    pillow_decode.py MANIFEST.csv [--workers 2] [--repeat 1] [--no-draft]
Prints one JSON line: images, seconds, images_per_s, images_per_s_per_worker.
"""

import argparse
import csv
import json
import time
from multiprocessing import Pool

import numpy as np
from PIL import Image

DRAFT = True


def load(path):
    im = Image.open(path)
    if DRAFT and im.format == "JPEG":
        im.draft("RGB", (256, 256))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    return resize_crop(im.convert("RGB"))


def resize_crop(im):
    """The torchvision-style preparation: short side to 256 (bilinear), centre crop 224, uint8."""
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(im.crop((left, top, left + 224, top + 224)))


def init(draft):
    global DRAFT
    DRAFT = draft


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-draft", action="store_true")
    a = ap.parse_args()
    with open(a.manifest) as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    with Pool(a.workers, initializer=init, initargs=(not a.no_draft,)) as pool:
        list(pool.imap(load, paths[: 2 * a.workers], chunksize=1))  # workers started
        start = time.perf_counter()
        n = 0
        for _ in range(a.repeat):
            for arr in pool.imap(load, paths, chunksize=8):
                assert arr.shape == (224, 224, 3)
                n += 1
        secs = time.perf_counter() - start
    print(json.dumps({"images": n, "seconds": round(secs, 3), "images_per_s": round(n / secs, 1),
                      "images_per_s_per_worker": round(n / secs / a.workers, 1)}))


if __name__ == "__main__":
    main()
