#!/usr/bin/env python3
"""Writes the same small images in the layouts large image sets ship in, for tests and benchmarks.

    make_input_fixtures.py OUT [--n 40] [--long 300] [--seed 0] [--bad] [--row-group 7] [--shards 3]

From the real photographs in scikit-image (random crops, flips, colour jitter; JPEG, PNG and lossy
WebP, long side --long px) it writes, for image key K (`000000017`):

OUT/loose/K.<ext>                   one file per image (ids: `K.<ext>`)
OUT/wit/part-0000S.parquet          wikimedia/wit_base's layout: `image` is a Hugging Face datasets
                                    Image (struct<bytes: binary, path: string>, declared in the
                                    `huggingface` schema metadata), `image_url` (the id), a 2048-d
                                    float `embedding` list, original_width/height, mime_type, a
                                    caption; row groups of --row-group rows
OUT/img2dataset/0000S.tar           img2dataset's webdataset output: K.jpg (or .png/.webp), K.json,
                                    K.txt per sample (ids: `K`)
OUT/img2dataset-parquet/0000S.parquet  img2dataset's Parquet output: key, url, caption, status, ...,
                                    and the bytes in a binary `jpg` column
OUT/keys.json                       per key: its loose file name, image_url, format, whether it is
                                    a bad row, and the photograph it was cut from (a label)

With --bad, a few rows are broken on purpose: truncated bytes and empty bytes in every layout,
and a null image in the Parquet layouts (a failed download in img2dataset's).
"""

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from photo_variants import photo_variants

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "brick.png", "color.png"]
FORMATS = [("jpg", "JPEG"), ("jpg", "JPEG"), ("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")]
MIME = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
URL = "https://upload.wikimedia.org/wikipedia/commons/{}"


def make_images(n, long, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i, (source, c) in enumerate(photo_variants(PHOTOS, n, long, rng)):
        ext, fmt = FORMATS[i % len(FORMATS)]
        buf = io.BytesIO()
        c.save(buf, fmt, **({"quality": int(rng.integers(80, 95))} if fmt in ("JPEG", "WEBP") else {}))
        out.append({"key": f"{i:09d}", "ext": ext, "bytes": buf.getvalue(), "size": c.size, "source": source})
    return out


def break_some(images):
    """Truncated bytes, empty bytes and (Parquet only) a null image, on fixed rows."""
    n = len(images)
    plan = {n // 5: "truncated", n // 2: "empty", (3 * n) // 4: "null"}
    for i, what in plan.items():
        img = images[i]
        img["bad"] = what
        if what == "truncated":
            img["bytes"] = img["bytes"][: len(img["bytes"]) // 3]
        elif what == "empty":
            img["bytes"] = b""
    return images


def split(items, shards):
    per = -(-len(items) // shards)
    return [items[k * per:(k + 1) * per] for k in range(shards)]


def write_loose(out, images):
    d = out / "loose"
    d.mkdir(parents=True, exist_ok=True)
    for img in images:
        if img.get("bad") != "null":  # a missing file is not a loose-file fault worth faking
            (d / f"{img['key']}.{img['ext']}").write_bytes(img["bytes"])


def write_wit(out, images, shards, row_group):
    d = out / "wit"
    d.mkdir(parents=True, exist_ok=True)
    image_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {
        "image": {"_type": "Image"},
        "image_url": {"dtype": "string", "_type": "Value"},
        "embedding": {"feature": {"dtype": "float32", "_type": "Value"}, "_type": "Sequence"},
        "metadata_url": {"dtype": "string", "_type": "Value"},
        "original_height": {"dtype": "int32", "_type": "Value"},
        "original_width": {"dtype": "int32", "_type": "Value"},
        "mime_type": {"dtype": "string", "_type": "Value"},
        "caption_attribution_description": {"dtype": "string", "_type": "Value"},
    }
    schema = pa.schema([
        ("image", image_t), ("image_url", pa.string()), ("embedding", pa.list_(pa.float32())),
        ("metadata_url", pa.string()), ("original_height", pa.int32()), ("original_width", pa.int32()),
        ("mime_type", pa.string()), ("caption_attribution_description", pa.string()),
    ], metadata={"huggingface": json.dumps({"info": {"features": features}})})
    rng = np.random.default_rng(1)
    for k, part in enumerate(split(images, shards)):
        rows = {f.name: [] for f in schema}
        for img in part:
            name = f"{img['key']}.{img['ext']}"
            rows["image"].append(None if img.get("bad") == "null" else {"bytes": img["bytes"], "path": name})
            rows["image_url"].append(URL.format(name))
            rows["embedding"].append(rng.random(2048, dtype=np.float32).tolist())
            rows["metadata_url"].append(URL.format("File:" + name))
            rows["original_height"].append(img["size"][1] * 10)
            rows["original_width"].append(img["size"][0] * 10)
            rows["mime_type"].append(MIME[img["ext"]])
            rows["caption_attribution_description"].append(f"photograph {img['key']}")
        pq.write_table(pa.Table.from_pydict(rows, schema=schema), d / f"part-{k:05d}.parquet",
                       row_group_size=row_group)


def write_img2dataset(out, images, shards):
    d = out / "img2dataset"
    dp = out / "img2dataset-parquet"
    d.mkdir(parents=True, exist_ok=True)
    dp.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(split(images, shards)):
        with tarfile.open(d / f"{k:05d}.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for img in part:
                if img.get("bad") == "null":
                    continue  # img2dataset writes only successful downloads into tars
                meta = {"url": URL.format(f"{img['key']}.{img['ext']}"), "key": img["key"], "status": "success",
                        "width": img["size"][0], "height": img["size"][1]}
                for ext, payload in [(img["ext"], img["bytes"]), ("json", json.dumps(meta).encode()),
                                     ("txt", f"photograph {img['key']}".encode())]:
                    info = tarfile.TarInfo(f"{img['key']}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        table = pa.table({
            "key": [img["key"] for img in part],
            "url": [URL.format(f"{img['key']}.{img['ext']}") for img in part],
            "caption": [f"photograph {img['key']}" for img in part],
            "status": ["failed_to_download" if img.get("bad") == "null" else "success" for img in part],
            "error_message": ["404" if img.get("bad") == "null" else None for img in part],
            "width": pa.array([img["size"][0] for img in part], pa.int64()),
            "height": pa.array([img["size"][1] for img in part], pa.int64()),
            "jpg": pa.array([None if img.get("bad") == "null" else img["bytes"] for img in part], pa.binary()),
        })
        pq.write_table(table, dp / f"{k:05d}.parquet")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--long", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bad", action="store_true")
    ap.add_argument("--row-group", type=int, default=7)
    ap.add_argument("--shards", type=int, default=3)
    a = ap.parse_args()
    images = make_images(a.n, a.long, a.seed)
    if a.bad:
        images = break_some(images)
    write_loose(a.out, images)
    write_wit(a.out, images, a.shards, a.row_group)
    write_img2dataset(a.out, images, a.shards)
    keys = {img["key"]: {"file": f"{img['key']}.{img['ext']}", "image_url": URL.format(f"{img['key']}.{img['ext']}"),
                         "format": img["ext"], "bad": img.get("bad"), "source": img["source"]} for img in images}
    (a.out / "keys.json").write_text(json.dumps(keys, indent=1))
    print(f"wrote {len(images)} images ({sum(1 for i in images if i.get('bad'))} broken) in 4 layouts to {a.out}")


if __name__ == "__main__":
    main()
