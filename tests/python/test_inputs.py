"""The inputs large image sets ship in, and the cache as one dataset in the tools users have.

The same real photos as loose files, as WIT-style Parquet shards (a Hugging Face datasets Image
column), as img2dataset's webdataset tars and as img2dataset's Parquet give the same ids (up to
each layout's id rule) and bit-identical embeddings; bad rows are recorded with the shard and row
or member they came from. The cache directory reads as one table in pyarrow, pandas, polars and
DuckDB, and the README's Python snippet works as written.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, read_cache, read_failures, release_binary

MODEL = "efficientnet-lite0"


def extractor(*args, check=True):
    cmd = [str(release_binary("extractor")), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def embed(inp, out, *extra, check=True):
    return extractor("embed", inp, "--model", MODEL, "--out", out, "--quiet", "--device", "cpu", *extra, check=check)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    subprocess.run([sys.executable, str(ROOT / "scripts/make_input_fixtures.py"), str(d), "--n", "36", "--bad"],
                   check=True, capture_output=True)
    return d, json.loads((d / "keys.json").read_text())


@pytest.fixture(scope="module")
def caches(fixtures, tmp_path_factory):
    d, _ = fixtures
    out = tmp_path_factory.mktemp("caches")
    layouts = {
        "loose": str(d / "loose"),
        "wit": str(d / "wit"),
        "wit-glob": str(d / "wit" / "part-*.parquet"),
        "tar-braces": str(d / "img2dataset" / "{00000..00002}.tar"),
        "tar-dir": str(d / "img2dataset"),
        "i2d-parquet": str(d / "img2dataset-parquet"),
    }
    for name, inp in layouts.items():
        embed(inp, out / name, "--dtype", "f32", "--batch-size", "5")
    return out


def by_key(cache, key_of):
    ids, emb, _ = read_cache(cache)
    out = {key_of(i): e for i, e in zip(ids, emb)}
    assert len(out) == len(ids), "two ids map to one key"
    return out


KEY_OF = {
    "loose": lambda i: i.split(".")[0],  # 000000017.jpg
    "wit": lambda i: i.rsplit("/", 1)[1].split(".")[0],  # https://upload.wikimedia.org/.../000000017.jpg
    "wit-glob": lambda i: i.rsplit("/", 1)[1].split(".")[0],
    "tar-braces": lambda i: i,  # 000000017 (the sample key)
    "tar-dir": lambda i: i,
    "i2d-parquet": lambda i: i,  # the `key` column
}


def test_every_layout_gives_the_same_ids_and_bit_identical_embeddings(fixtures, caches):
    _, keys = fixtures
    good = sorted(k for k, v in keys.items() if not v["bad"])
    base = by_key(caches / "loose", KEY_OF["loose"])
    assert sorted(base) == good
    for name, key_of in KEY_OF.items():
        got = by_key(caches / name, key_of)
        assert sorted(got) == good, name
        for k in good:
            assert np.array_equal(got[k].view(np.uint32), base[k].view(np.uint32)), f"{name}: {k} differs"
    ids = read_cache(caches / "wit")[0]
    assert all(i.startswith("https://upload.wikimedia.org/") for i in ids), "WIT ids are the image_url"


def test_bad_rows_are_recorded_with_their_shard_and_row(fixtures, caches):
    _, keys = fixtures
    bad = {k: v["bad"] for k, v in keys.items() if v["bad"]}
    assert sorted(bad.values()) == ["empty", "null", "truncated"]
    kind = {"truncated": "corrupt", "empty": "empty", "null": "missing"}
    wit = {KEY_OF["wit"](i): f for i, f in read_failures(caches / "wit").items()}
    assert {k: f["kind"] for k, f in wit.items()} == {k: kind[b] for k, b in bad.items()}
    for k, f in wit.items():
        assert f["source"].endswith(".parquet") and f["source_row"] is not None, f
    null = next(k for k, b in bad.items() if b == "null")
    assert wit[null]["reason"] == "the image is null"
    i2d = read_failures(caches / "i2d-parquet")
    assert i2d[null]["kind"] == "missing" and i2d[null]["reason"] == "the image cell is null"
    tar = read_failures(caches / "tar-braces")
    # img2dataset writes no sample for a failed download into tars
    assert {k: f["kind"] for k, f in tar.items()} == {k: kind[b] for k, b in bad.items() if b != "null"}
    for k, f in tar.items():
        assert f["source"].endswith(".tar") and f["source_member"].startswith(k), f


def test_the_cache_records_where_each_image_came_from(fixtures, caches):
    d, _ = fixtures
    t = pq.read_table(caches / "wit").to_pylist()
    row = t[0]
    shard = pq.read_table(row["source"], columns=["image_url"])
    assert shard.column("image_url")[row["source_row"]].as_py() == row["id"]
    t = pq.read_table(caches / "tar-dir").to_pylist()
    assert all(r["source_member"] == f"{r['id']}.{r['source_member'].split('.')[-1]}" for r in t)
    t = pq.read_table(caches / "loose").to_pylist()
    assert all(r["source"] == str(d / "loose" / r["id"]) and r["source_row"] is None for r in t)


def test_the_cache_is_one_table_in_pyarrow_pandas_polars_and_duckdb(caches):
    import duckdb
    import pandas as pd
    import polars as pl

    cache = caches / "wit"
    assert (cache / "_failures").is_dir() and len(read_failures(cache)) == 3
    ids, emb, meta = read_cache(cache)
    n = len(ids)
    assert n == 33 and meta[b"wit.model"] == MODEL.encode()
    df = pd.read_parquet(cache)
    assert len(df) == n and df["embedding"].notna().all()
    for frame in (pl.read_parquet(f"{cache}/*.parquet"), pl.scan_parquet(f"{cache}/*.parquet").collect()):
        assert frame.height == n and frame["embedding"].null_count() == 0
    ((rows, nulls, first),) = duckdb.sql(
        f"select count(*), count(*) - count(embedding), sum(embedding[1]) from '{cache}/*.parquet'").fetchall()
    assert (rows, nulls) == (n, 0)
    assert abs(first - float(emb[:, 0].sum())) < 1e-3


def test_duckdb_reads_the_default_f16_cache(fixtures, tmp_path):
    import duckdb

    d, _ = fixtures
    out = tmp_path / "f16"
    embed(d / "loose", out)  # f16, the default
    ids, emb, meta = read_cache(out)
    assert meta[b"wit.dtype"] == b"f16"
    got = dict(duckdb.sql(f"select id, embedding[1]::double from '{out}/*.parquet'").fetchall())
    assert set(got) == set(ids)
    for i, e in zip(ids, emb):
        assert got[i] == float(e[0]), i


def test_the_readme_snippet_works_as_written(caches, monkeypatch):
    text = (ROOT / "README.md").read_text()
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if 'pq.read_table("cache/lite0")' in b]
    monkeypatch.chdir(caches.parent)
    (caches.parent / "cache").mkdir(exist_ok=True)
    (caches.parent / "cache" / "lite0").symlink_to(caches / "wit")
    env = {}
    exec(compile(snippet, "README.md", "exec"), env)
    assert env["X"].shape == (33, 1280) and env["X"].dtype == np.float32


def test_shards_of_parquet_and_tar_inputs_partition_and_resume(fixtures, tmp_path):
    d, keys = fixtures
    for name, inp in [("wit", d / "wit"), ("tar", f"{d}/img2dataset/{{00000..00002}}.tar")]:
        out = tmp_path / name
        for i in range(4):
            embed(inp, out, "--shard", f"{i}/4")
        ids, _, _ = read_cache(out)
        assert len(ids) == len(set(ids)) == sum(1 for v in keys.values() if not v["bad"])
        again = embed(inp, out, "--shard", "0/1")
        assert "embedded 0 images, 0 failed" in again.stdout, again.stdout
        info = json.loads(extractor("info", out, "--json").stdout)
        # Parquet row groups (6 of them) are dealt to all 4 shards; 3 tar files to 3 of them
        assert info["duplicates"] == 0 and len(info["rows_by_shard"]) == (4 if name == "wit" else 3), info


def test_an_id_in_two_shards_is_embedded_once_and_the_repeat_recorded(fixtures, tmp_path):
    import shutil

    d, _ = fixtures
    shards = tmp_path / "shards"
    shards.mkdir()
    shutil.copy(d / "img2dataset" / "00000.tar", shards / "00000.tar")
    shutil.copy(d / "img2dataset" / "00000.tar", shards / "00001.tar")  # the same keys again
    out = tmp_path / "cache"
    embed(shards, out)
    ids = read_cache(out)[0]
    assert len(ids) == len(set(ids)) and ids
    dup = {k: f for k, f in read_failures(out).items() if f["kind"] == "duplicate-id"}
    assert len(dup) == 12, "every sample of the second shard (12 per shard)"
    f = next(iter(dup.values()))
    assert f["source"].endswith("00001.tar") and "00000.tar member" in f["reason"], f


def as_format_1(cache, old):
    """The cache as the format-1 extractor wrote it: no source columns, f16 values byte-stream-split,
    failure tables beside the parts with a `path` column."""
    import pyarrow as pa

    old.mkdir()
    for p in sorted(cache.glob("emb-*.parquet")):
        t = pq.read_table(p).drop_columns(["source", "source_row", "source_member"])
        meta = dict(t.schema.metadata)
        meta[b"wit.format_version"] = b"1"
        t = t.replace_schema_metadata(meta)
        pq.write_table(t, old / p.name, compression="zstd", row_group_size=8192, use_dictionary=["id"],
                       use_byte_stream_split=["embedding.list.element"], store_schema=True)
    for p in sorted((cache / "_failures").glob("*.parquet")):
        f = pq.read_table(p)
        legacy = pa.table({"id": f.column("id"), "path": f.column("source"), "kind": f.column("kind"),
                           "reason": f.column("reason")})
        pq.write_table(legacy, old / p.name)


def test_a_format_1_cache_is_read_refused_for_writing_and_migrated(fixtures, caches, tmp_path):
    import duckdb

    d, _ = fixtures
    old = tmp_path / "old"
    as_format_1(caches / "loose", old)
    info = json.loads(extractor("info", old, "--json").stdout)
    assert info["rows"] == 33 and info["format_versions"] == {"1": 1} and info["failures"] == 2, info
    refused = embed(d / "loose", old, "--dtype", "f32", check=False)
    assert refused.returncode != 0 and f"run `extractor migrate {old}` once" in refused.stderr, refused.stderr
    before = dict(zip(*read_cache(caches / "loose")[:2]))
    migrated = extractor("migrate", old).stdout
    assert "1 parts rewritten in format 2, 1 failure tables moved" in migrated, migrated
    assert not list(old.glob("failures-*.parquet")) and len(read_failures(old)) == 2
    after = dict(zip(*read_cache(old)[:2]))  # pyarrow reads the directory as one table again
    assert sorted(after) == sorted(before)
    assert all(np.array_equal(after[k], before[k]) for k in before)
    assert duckdb.sql(f"select count(*) from '{old}/*.parquet'").fetchall() == [(33,)]
    again = embed(d / "loose", old, "--dtype", "f32")
    assert "embedded 0 images, 0 failed, 35 already done" in again.stdout, again.stdout
