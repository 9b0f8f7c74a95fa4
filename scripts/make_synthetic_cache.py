#!/usr/bin/env python3
"""Writes a synthetic embedding cache with a planted label signal, plus its label table.

    scripts/make_synthetic_cache.py OUT_DIR [--n 570000] [--dim 1280] [--labels 20] [--seed 0]
                                    [--encoding plain|byte-stream-split]

OUT_DIR/cache/emb-synthetic-000000.parquet  the embeddings (float16, the feature-cache contract)
OUT_DIR/labels.parquet                      id + `topics` (list of strings)

Label j has frequency following the seed's long tail (about 25% down to 1%), and its images get
a label-specific direction added to non-negative noise, so a head can learn it but not perfectly.
"""

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def frequencies(m: int) -> np.ndarray:
    # long tail between 25% and 1%, like topic labels of Wikipedia images
    return np.geomspace(0.25, 0.01, m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=570_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--labels", type=int, default=20)
    ap.add_argument("--signal", type=float, default=0.6, help="strength of the planted direction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--encoding", choices=["plain", "byte-stream-split"], default="plain",
                    help="of the f16 values: plain as the extractor writes them (DuckDB reads it), or "
                         "byte-stream-split as it did before (to compare read speeds)")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    m, d = args.labels, args.dim
    freq = frequencies(m)
    directions = rng.normal(size=(m, d)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True) / np.sqrt(d) * 4.0
    names = [f"topic{j:02d}" for j in range(m)]
    cache = args.out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    meta = {
        "wit.format_version": "1",
        "wit.model": "synthetic",
        "wit.model_sha256": hashlib.sha256(f"synthetic-{args.seed}-{d}".encode()).hexdigest(),
        "wit.dim": str(d),
        "wit.pooling": "avg",
        "wit.input_size": "224",
        "wit.preprocessing": "synthetic",
        "wit.dtype": "f16",
        "wit.tool_version": "make_synthetic_cache.py",
    }
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.field("item", pa.float16(), nullable=False), d), nullable=False),
            pa.field("width", pa.uint32(), nullable=False),
            pa.field("height", pa.uint32(), nullable=False),
        ],
        metadata=meta,
    )
    ids_all, labels_all = [], []
    tmp = cache / ".emb-synthetic-000000.parquet.tmp"
    # as the extractor writes them: f16 values PLAIN (or byte-stream-split), no dictionary
    bss = ["embedding.list.element"] if args.encoding == "byte-stream-split" else False
    with pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=1, use_dictionary=["id"],
                          use_byte_stream_split=bss) as w:
        for start in range(0, args.n, args.chunk):
            n = min(args.chunk, args.n - start)
            y = rng.random((n, m)) < freq
            x = np.abs(rng.normal(size=(n, d)).astype(np.float32)) + (y.astype(np.float32) * args.signal) @ directions
            x = np.maximum(x, 0).astype(np.float16)
            ids = [f"img{start + i:07d}" for i in range(n)]
            flat = pa.array(x.reshape(-1), type=pa.float16())
            emb = pa.FixedSizeListArray.from_arrays(flat, d)
            ones = pa.array(np.full(n, 224, np.uint32))
            w.write_table(pa.table([pa.array(ids), emb, ones, ones], schema=schema), row_group_size=8192)
            ids_all += ids
            labels_all += [[names[j] for j in np.flatnonzero(row)] for row in y]
    tmp.rename(cache / "emb-synthetic-000000.parquet")
    pq.write_table(pa.table({"id": ids_all, "topics": labels_all}), args.out / "labels.parquet")
    print(f"wrote {args.n} x {d} float16 embeddings and {m} labels to {args.out}")


if __name__ == "__main__":
    main()
