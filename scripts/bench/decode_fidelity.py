#!/usr/bin/env python3
"""How much reduced-scale JPEG decoding changes the embeddings: for each --jpeg-draft-margin, the
cosine between each image's Lite0 embedding (float32) and its embedding from a full-size decode
(margin 0), over a set of large JPEGs; and the same for the Pillow pipeline a user would write
(draft() to 1/2, 1/4 or 1/8 scale while the image stays >= 256 px, resize the short side to 256,
centre crop 224), against the same full-decode embedding and against Pillow without draft().

    decode_fidelity.py MANIFEST.csv [--margins 1,1.5,2,3,4] [--model efficientnet-lite0]
Prints a Markdown table (min, 1st percentile, mean, share >= 0.999, the DCT scales used) and
writes the numbers as JSON to --json if given.
"""

import argparse
import csv
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
from PIL import Image
from pillow_decode import resize_crop  # the same preparation the speed benchmark times

ROOT = Path(__file__).resolve().parents[2]


def extractor_embeddings(manifest: str, model: str, margin: float, out: Path) -> dict:
    subprocess.run(
        [str(ROOT / "target/release/extractor"), "embed", manifest, "--model", model, "--out", str(out),
         "--dtype", "f32", "--jpeg-draft-margin", str(margin), "--quiet", "--device", "cpu"],
        check=True, stdout=subprocess.DEVNULL)
    t = pq.read_table(out)
    emb = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(t), -1)
    return dict(zip(t.column("id").to_pylist(), emb.astype(np.float64)))


def pillow_pixels(path: str, draft: bool):
    im = Image.open(path)
    scale = 1
    if draft:
        before = im.size[0]
        im.draft("RGB", (256, 256))
        scale = round(before / im.size[0])
    return resize_crop(im.convert("RGB")), scale


def pillow_embeddings(paths: dict, model: str, draft: bool):
    man = json.load(open(ROOT / "models" / f"{model}.json"))
    sess = ort.InferenceSession(str(ROOT / "models" / man["onnx"]), providers=["CPUExecutionProvider"])
    out, scales = {}, []
    ids = list(paths)
    for i in range(0, len(ids), 32):
        chunk = ids[i:i + 32]
        pix = [pillow_pixels(paths[k], draft) for k in chunk]
        scales += [s for _, s in pix]
        emb = sess.run(["embedding"], {"pixels": np.stack([p for p, _ in pix])})[0]
        out.update(zip(chunk, emb.astype(np.float64)))
    return out, scales


def agreement(got: dict, ref: dict) -> dict:
    cos = np.array([got[k] @ ref[k] / (np.linalg.norm(got[k]) * np.linalg.norm(ref[k])) for k in ref])
    return {"min": float(cos.min()), "p1": float(np.percentile(cos, 1)), "mean": float(cos.mean()),
            "share_999": float((cos >= 0.999).mean())}


def scales_used(manifest: str, margin: float) -> dict:
    """The DCT reduction the extractor picks for each image at `margin` (its rule, re-derived)."""
    if margin <= 0:
        return {1: 0}
    min_short = int(np.ceil(224 * margin / 0.875))
    counts = {}
    with open(manifest) as f:
        for r in csv.DictReader(f):
            with Image.open(r["path"]) as im:
                short = min(im.size)
            red = next((r for r in (8, 4, 2) if -(-short // r) >= min_short), 1)
            counts[red] = counts.get(red, 0) + 1
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--margins", default="1,1.5,2,3,4")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--json")
    a = ap.parse_args()
    with open(a.manifest) as f:
        paths = {r["id"]: r["path"] for r in csv.DictReader(f)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = extractor_embeddings(a.manifest, a.model, 0, Path(tmp) / "m0")
        for m in [float(x) for x in a.margins.split(",")]:
            got = extractor_embeddings(a.manifest, a.model, m, Path(tmp) / f"m{m}")
            rows.append({"pipeline": f"extractor, margin {m:g}", **agreement(got, ref),
                         "scales": scales_used(a.manifest, m)})
    full, _ = pillow_embeddings(paths, a.model, draft=False)
    drafted, scales = pillow_embeddings(paths, a.model, draft=True)
    counts = {s: scales.count(s) for s in sorted(set(scales))}
    rows.append({"pipeline": "Pillow draft vs extractor full decode", **agreement(drafted, ref), "scales": counts})
    rows.append({"pipeline": "Pillow draft vs Pillow full decode", **agreement(drafted, full), "scales": counts})
    rows.append({"pipeline": "Pillow full decode vs extractor full decode", **agreement(full, ref), "scales": {1: len(full)}})
    print("| pipeline | min | 1st percentile | mean | share >= 0.999 | DCT scale: images |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        sc = ", ".join(f"1/{k}: {v}" for k, v in sorted(r["scales"].items()))
        print(f"| {r['pipeline']} | {r['min']:.5f} | {r['p1']:.5f} | {r['mean']:.5f} | {r['share_999']:.3f} | {sc} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
