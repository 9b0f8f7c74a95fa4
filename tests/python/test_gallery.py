"""The error gallery (report.html) opened in a real browser: headless Chromium loads every
thumbnail and logs no error. Images are found again through the origins the cache recorded (here
rows of WIT-style Parquet shards), or through `--images` for a cache that recorded none.
"""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, release_binary

sys.path.insert(0, str(ROOT / "scripts"))
import browser  # noqa: E402

PHOTOS = ["cat", "coffee", "astronaut", "rocket", "motorcycle", "motorcycle", "galaxy", "retina", "brick", "colour"]


def run(*cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("gallery")
    run(sys.executable, ROOT / "scripts/make_input_fixtures.py", d, "--n", "90", "--long", "200")
    cache = d / "cache"
    run(release_binary("extractor"), "embed", d / "wit", "--model", "efficientnet-lite0", "--out", cache,
        "--device", "cpu", "--quiet")
    keys = json.loads((d / "keys.json").read_text())
    # what each fixture image shows: the photo it was cut from (make_input_fixtures deals them in turn)
    rows = ["id,subject"] + [f"{v['image_url']},{PHOTOS[int(k) % len(PHOTOS)]}" for k, v in keys.items()]
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    out = d / "run"
    run(release_binary("head-trainer"), "train", "--embeddings", cache, "--labels", d / "labels.csv", "--out", out,
        "--column", "subject", "--epochs", "10", "--gallery", "3", "--quiet")
    return d, out


def test_the_gallery_shows_thumbnails_read_back_from_parquet_rows(trained):
    d, out = trained
    page = (out / "report.html").read_text()
    assert "Surest true positives" in page and "Top false positives" in page and "Missed positives" in page
    thumbs = sorted((out / "gallery").glob("*.jpg"))
    assert len(thumbs) >= 9, len(thumbs)
    assert all(t.stat().st_size < 20_000 for t in thumbs), "thumbnails, not originals"
    assert 'class="note"' not in page, "every image was found"
    # no image was read from anywhere but the shards the cache recorded
    sources = set(pq.read_table(d / "cache", columns=["source"]).column("source").to_pylist())
    assert all(s.endswith(".parquet") for s in sources)


def test_a_browser_loads_every_thumbnail_without_console_errors(trained):
    why = browser.available()
    if why:
        pytest.skip(f"no browser to open the gallery in: {why}")
    _, out = trained
    with browser.Page(out / "report.html") as page:
        images, errors = page.images(), page.console_errors()
    assert len(images) >= 9
    assert [src for src, ok in images if not ok] == [], "thumbnails that did not load"
    assert errors == [], errors


def test_report_rebuilds_a_gallery_from_images_given_by_hand(trained, tmp_path):
    d, out = trained
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "gallery")
    (copy / "report.html").unlink()
    # the loose copies of the same images, under ids of another rule: only ids that match are shown
    proc = run(release_binary("head-trainer"), "report", copy, "--images", d / "wit", "--gallery", "2", "--quiet")
    assert "thumbnails" in proc.stdout
    assert len(list((copy / "gallery").glob("*.jpg"))) >= 6
    assert "Surest true positives" in (copy / "report.html").read_text()
