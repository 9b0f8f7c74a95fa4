"""Killed at random points, many times, a job resumes to the same result.

Each trial starts a job, kills it with SIGKILL after a random delay (no destructor, no cleanup),
reruns it to completion and compares the outcome with an uninterrupted run: the same ids, the
same bits, the same failures, nothing duplicated, no temporary left behind.
"""

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, read_cache, read_failures, release_binary

TRIALS = 12


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill-inputs")
    subprocess.run([sys.executable, str(ROOT / "scripts/make_input_fixtures.py"), str(d), "--n", "60", "--bad",
                    "--row-group", "5", "--shards", "4"], check=True, capture_output=True)
    return d


def extract_cmd(inp, out):
    return [str(release_binary("extractor")), "embed", str(inp), "--model", "efficientnet-lite0", "--out", str(out),
            "--device", "cpu", "--dtype", "f32", "--batch-size", "4", "--part-size", "6", "--threads", "1",
            "--input-size", "96", "--quiet"]


def snapshot(cache):
    ids, emb, _ = read_cache(cache)
    assert len(ids) == len(set(ids)), "duplicate ids"
    return dict(zip(ids, (e.tobytes() for e in emb))), {k: (f["kind"], f["reason"]) for k, f in read_failures(cache).items()}


def test_the_extractor_killed_anywhere_resumes_to_the_same_cache(shards, tmp_path):
    inp = shards / "wit"
    reference = tmp_path / "reference"
    start = time.monotonic()
    subprocess.run(extract_cmd(inp, reference), check=True, capture_output=True)
    full = time.monotonic() - start
    want = snapshot(reference)
    rng = random.Random(11)
    kills = []
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        # one, two or three kills at random points of the run before it may finish
        for _ in range(1 + trial % 3):
            proc = subprocess.Popen(extract_cmd(inp, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            delay = rng.uniform(0.05, full * 0.9)
            time.sleep(delay)
            killed = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append((trial, round(delay, 2), killed))
        done = subprocess.run(extract_cmd(inp, out), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert snapshot(out) == want, f"trial {trial} (kills {kills[-3:]}) differs from the uninterrupted run"
        leftovers = [p.name for p in out.rglob(".*") if p.name.endswith(".tmp")]
        assert not leftovers, leftovers
    assert sum(k for _, _, k in kills) >= TRIALS, f"most kills must hit a running job: {kills}"
    info = json.loads(subprocess.run([str(release_binary("extractor")), "info", str(out), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["duplicates"] == 0 and info["embedded_and_failed"] == 0


SWEEP = """embeddings = "cache"
labels = "labels.parquet"
[defaults]
train = { epochs = 4, batch_size = 32 }
[[run]]
name = "all"
column = "topics"
[[run]]
name = "top3"
column = "topics"
top_k = 3
[[run]]
name = "pair"
column = "topics"
labels = ["topic00", "topic01"]
hidden = 64
[[run]]
name = "probe"
column = "topics"
top_k = 3
model = "linear"
"""

SWEEP_TRIALS = 22


def sweep_cmd(sweep, out):
    return [str(release_binary("head-trainer")), "sweep", str(sweep), "--out", str(out), "--quiet"]


def sweep_result(out):
    """Every run's bits and the summary without its timing columns."""
    runs = {}
    for name in ["all", "top3", "pair", "probe"]:
        runs[name] = {f: (out / name / f).read_bytes() for f in ["metrics.json", "head.safetensors"]}
    rows = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("train_seconds"), r.pop("fused_with")
    return runs, rows


def test_a_sweep_killed_anywhere_resumes_to_the_same_result(tmp_path):
    d = tmp_path / "data"
    subprocess.run([sys.executable, str(ROOT / "scripts/make_synthetic_cache.py"), str(d), "--n", "3000", "--dim", "48",
                    "--labels", "5", "--seed", "1", "--signal", "0.5"], check=True, capture_output=True)
    sweep = d / "sweep.toml"
    sweep.write_text(SWEEP)
    reference = tmp_path / "reference"
    start = time.monotonic()
    subprocess.run(sweep_cmd(sweep, reference), check=True, capture_output=True)
    full = time.monotonic() - start
    want = sweep_result(reference)
    rng = random.Random(7)
    hits = 0
    for trial in range(SWEEP_TRIALS):
        out = tmp_path / f"trial{trial}"
        proc = subprocess.Popen(sweep_cmd(sweep, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.02, full))
        hits += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = subprocess.run(sweep_cmd(sweep, out), capture_output=True, text=True)
        assert done.returncode == 0, f"trial {trial}: {done.stderr}"
        assert sweep_result(out) == want, f"trial {trial}: the resumed sweep differs"
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporaries left"
    assert hits >= SWEEP_TRIALS * 2 // 3, f"only {hits} of {SWEEP_TRIALS} kills hit a running sweep"
