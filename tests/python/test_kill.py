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
