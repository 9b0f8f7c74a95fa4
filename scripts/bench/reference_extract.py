#!/usr/bin/env python3
"""The Python pipeline a user would write instead of the extractor: Pillow decoding and resizing in a
process pool (JPEG draft mode for DCT-domain downscaling), onnxruntime on batches, same ONNX file and
preprocessing (centre crop, bilinear). Keeps embeddings in memory (writes nothing).

    reference_extract.py MANIFEST.csv MODEL_JSON [--batch-size 64] [--workers N]
Prints one JSON line: images, seconds, images_per_s.
"""

import argparse
import csv
import json
import os
import time
from multiprocessing import Pool

import numpy as np
import onnxruntime as ort
from PIL import Image

SIZE = 224
CROP = 0.875


def load(path):
    try:
        im = Image.open(path)
        if im.format == "JPEG":
            im.draft("RGB", (SIZE * 2, SIZE * 2))
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("RGB")
        w, h = im.size
        c = min(w, h) * CROP
        box = ((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2)
        return np.asarray(im.resize((SIZE, SIZE), Image.BILINEAR, box=box))
    except Exception:  # noqa: BLE001 - a failure is skipped, as the extractor records and skips it
        return None


def main():
    global SIZE, CROP
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("model_json")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()
    man = json.load(open(a.model_json))
    SIZE, CROP = man["input"]["size"], man["input"]["resize"]["crop_fraction"]
    with open(a.manifest) as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.workers
    sess = ort.InferenceSession(os.path.join(os.path.dirname(a.model_json), man["onnx"]), opts,
                                providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    out, batch = [], []
    with Pool(a.workers) as pool:
        for arr in pool.imap(load, paths, chunksize=8):
            if arr is None:
                continue
            batch.append(arr)
            if len(batch) == a.batch_size:
                out.append(sess.run(["embedding"], {"pixels": np.stack(batch)})[0])
                batch = []
        if batch:
            out.append(sess.run(["embedding"], {"pixels": np.stack(batch)})[0])
    secs = time.perf_counter() - start
    n = sum(len(o) for o in out)
    print(json.dumps({"images": n, "seconds": round(secs, 3), "images_per_s": round(n / secs, 2)}))


if __name__ == "__main__":
    main()
