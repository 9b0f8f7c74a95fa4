"""Label tables written by pyarrow, pandas (categoricals), polars, DuckDB and Spark train the same run.

Each tool stores the same strings and lists in its own Arrow representation (Utf8 / LargeUtf8 /
Utf8View, Dictionary, List / LargeList; Spark without an Arrow schema). The head-trainer must
read every one as the same labels and the same declared split — so the five runs are bit-identical
— and refuse a column it cannot read, naming the column and its type, instead of reading it as
empty.
"""

import json
import subprocess
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, release_binary

N = 400


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    subprocess.run([sys.executable, str(ROOT / "scripts/make_synthetic_cache.py"), str(d), "--n", str(N), "--dim", "24",
                    "--labels", "5", "--seed", "3", "--signal", "0.5"], check=True, capture_output=True)
    base = pq.read_table(d / "labels.parquet").to_pylist()
    split = ["train"] * 200 + ["val"] * 100 + ["test"] * 100
    rows = [{"id": r["id"], "topics": r["topics"], "split": s} for r, s in zip(base, split)]
    return d, rows


def write_tables(d, rows):
    ids = [r["id"] for r in rows]
    topics = [r["topics"] for r in rows]
    split = [r["split"] for r in rows]
    out = {}
    out["pyarrow"] = d / "pyarrow.parquet"
    pq.write_table(pa.table({"id": ids, "topics": topics, "split": split}), out["pyarrow"])
    out["pandas"] = d / "pandas.parquet"
    df = pd.DataFrame({"id": pd.Categorical(ids), "topics": topics, "split": pd.Categorical(split)})
    df.to_parquet(out["pandas"])
    out["polars"] = d / "polars.parquet"
    pl.DataFrame({"id": ids, "topics": topics, "split": split}).write_parquet(out["polars"])
    out["duckdb"] = d / "duckdb.parquet"
    con = duckdb.connect()
    con.register("t", pa.table({"id": ids, "topics": topics, "split": split}))
    con.sql(f"COPY (SELECT id, topics, split FROM t) TO '{out['duckdb']}' (FORMAT parquet)")
    out["spark"] = d / "spark.parquet"  # Spark writes no Arrow schema: only Parquet's own types
    pq.write_table(pa.table({"id": ids, "topics": topics, "split": split}), out["spark"], store_schema=False)
    return out


def arrow_types(path):
    return {f.name: str(f.type) for f in pq.read_schema(path)}


def train(cache, labels, out, column="topics"):
    cmd = [str(release_binary("head-trainer")), "train", "--embeddings", str(cache), "--labels", str(labels),
           "--out", str(out), "--quiet", "--column", column, "--epochs", "3"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_every_tool_s_table_trains_the_same_run(data, tmp_path):
    d, rows = data
    tables = write_tables(tmp_path, rows)
    # the representations really differ
    assert "dictionary" in arrow_types(tables["pandas"])["id"]
    assert "dictionary" in arrow_types(tables["pandas"])["split"]
    assert arrow_types(tables["polars"])["topics"].startswith("large_list")
    runs = {}
    for tool, path in tables.items():
        out = tmp_path / tool / "run"
        proc = train(d / "cache", path, out)
        assert proc.returncode == 0, f"{tool}: {proc.stderr}"
        runs[tool] = out
    metrics = json.loads((runs["pyarrow"] / "metrics.json").read_text())
    assert metrics["join"]["per_split"] == [200, 100, 100], "the declared split is honoured"
    assert len(metrics["test"]["labels"]) == 5
    for tool, out in runs.items():
        for f in ["metrics.json", "head.safetensors"]:
            assert (out / f).read_bytes() == (runs["pyarrow"] / f).read_bytes(), f"{tool}: {f} differs"


def test_a_column_of_another_type_is_refused_naming_it(data, tmp_path):
    d, rows = data
    path = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "topics": [r["topics"] for r in rows],
                             "score": [0.5] * len(rows)}), path)
    proc = train(d / "cache", path, tmp_path / "run", column="score")
    assert proc.returncode != 0
    assert "column `score`: type Float64 is not supported" in proc.stderr, proc.stderr
    # an unreadable split column is refused at once rather than ignored
    path = tmp_path / "split.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "topics": [r["topics"] for r in rows],
                             "split": [1.0] * len(rows)}), path)
    proc = train(d / "cache", path, tmp_path / "run2")
    assert proc.returncode != 0 and "column `split`: type Float64" in proc.stderr, proc.stderr
