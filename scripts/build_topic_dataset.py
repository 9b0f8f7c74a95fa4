#!/usr/bin/env python3
"""Builds the topic dataset from unpacked Debian packages (see scripts/fetch-topic-dataset).

Labels come from the packages' folder trees:
  openclipart-png          usr/share/openclipart/png/<category>/...  (symlinks add second categories)
  tuxpaint-stamps-default  usr/share/tuxpaint/stamps/<category>/...  (`_mirror` copies skipped; SVG
                           preferred where a stamp exists as SVG and PNG)
  stellarium-data          nebulae/default (real astrophotos -> Space), skycultures (constellation
                           art -> Art + Space)
  kgeography-data          maps -> Maps, flags/ -> Flags

Writes into OUT: manifest.csv (id, path), labels.csv (id, fine, coarse; labels joined by '|'),
taxonomy.json (fine -> parents, for head-trainer --taxonomy), duplicates.csv (removed near-duplicates
and why) and stats.json. Near-duplicates (same 64-bit difference hash of the image composited on
white) are removed before any split is drawn, keeping the first id in sorted order.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # the extractor enforces its own limit and reports; here we only hash

# fine label -> parents (the coarse taxonomy follows the research's: STEM, Places, Society, Culture)
TAXONOMY = {
    "Animals": ["Nature"],
    "Plants": ["Nature"],
    "Nature": ["STEM"],
    "Space": ["STEM"],
    "Science": ["STEM"],
    "Computing": ["STEM"],
    "Architecture": ["Places"],
    "Maps": ["Maps & Flags"],
    "Flags": ["Maps & Flags"],
    "Maps & Flags": ["Places"],
    "People": ["Society"],
    "Sports": ["Society"],
    "Transportation": ["Society"],
    "Military": ["Society"],
    "Money": ["Society"],
    "Art": ["Culture"],
    "Music": ["Culture"],
    "Food": ["Culture"],
    "Holidays": ["Culture"],
    "Games": ["Culture"],
    "Clothing": ["Culture"],
    "Text": ["Culture"],
    "Objects": ["Symbols & Objects"],
    "Shapes": ["Symbols & Objects"],
    "Signs": ["Symbols & Objects"],
}
COARSE = ["STEM", "Places", "Society", "Culture", "Symbols & Objects"]

OPENCLIPART = {
    "animals": "Animals",
    "plants": "Plants",
    "food": "Food",
    "transportation": "Transportation",
    "buildings": "Architecture",
    "buildings/furniture": "Objects",
    "recreation/music": "Music",
    "recreation/sports": "Sports",
    "recreation/art": "Art",
    "recreation/holiday": "Holidays",
    "recreation/party": "Holidays",
    "recreation/games": "Games",
    "recreation/toys": "Games",
    "people": "People",
    "geography": "Maps",
    "geography/astronomy": "Space",
    "science/astronomy": "Space",
    "science": "Science",
    "signs_and_symbols": "Signs",
    "computer": "Computing",
    "electronics": "Computing",
    "shapes": "Shapes",
    "tools": "Objects",
    "office": "Objects",
    "containers": "Objects",
    "decorations": "Holidays",
    "education": "Science",
}
TUXPAINT = {
    "animals": "Animals",
    "plants": "Plants",
    "food": "Food",
    "vehicles": "Transportation",
    "town": "Architecture",
    "people": "People",
    "space": "Space",
    "sports": "Sports",
    "hobbies": "Games",
    "clothes": "Clothing",
    "household": "Objects",
    "military": "Military",
    "medical": "Science",
    "seasonal": "Holidays",
    "naturalforces": "Nature",
    "symbols": "Signs",
    "symbols/alphabets": "Text",
    "symbols/money": "Money",
    "symbols/music": "Music",
    "symbols/math": "Science",
    "symbols/chess": "Games",
    "symbols/shapes": "Shapes",
}
IMAGE_EXT = {".png", ".svg", ".jpg", ".jpeg"}


def ancestors(label: str) -> set[str]:
    out, stack = set(), [label]
    while stack:
        lab = stack.pop()
        for p in TAXONOMY.get(lab, []):
            if p not in out:
                out.add(p)
                stack.append(p)
    return out


def coarse_of(fine: set[str]) -> list[str]:
    tops = set()
    for f in fine:
        tops |= {a for a in ancestors(f) | {f} if a in COARSE}
    return sorted(tops)


def by_prefix(mapping: dict[str, str], rel_dir: str) -> str | None:
    """Label of the longest mapping key that is a prefix (folder-wise) of rel_dir."""
    parts = rel_dir.split("/")
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in mapping:
            return mapping[key]
    return None


def collect(root: Path) -> dict[Path, set[str]]:
    """Real image file -> fine labels."""
    share = root / "usr/share"
    labels: dict[Path, set[str]] = defaultdict(set)

    clip = share / "openclipart/png"
    for dirpath, _, files in os.walk(clip):
        for f in files:
            p = Path(dirpath) / f
            if p.suffix.lower() not in IMAGE_EXT:
                continue
            label = by_prefix(OPENCLIPART, str(Path(dirpath).relative_to(clip)))
            real = p.resolve()
            if not real.exists():
                continue
            if label:
                labels[real].add(label)  # a symlink adds its folder's category to the target
            else:
                labels.setdefault(real, set())

    stamps = share / "tuxpaint/stamps"
    for dirpath, _, files in os.walk(stamps):
        names = set(files)
        for f in files:
            p = Path(dirpath) / f
            if p.suffix.lower() not in IMAGE_EXT or "_mirror" in p.stem:
                continue
            if p.suffix.lower() == ".png" and f"{p.stem}.svg" in names:
                continue  # the SVG original is kept
            label = by_prefix(TUXPAINT, str(Path(dirpath).relative_to(stamps)))
            if label:
                labels[p.resolve()].add(label)

    for p in sorted((share / "stellarium/nebulae/default").glob("*.png")):
        labels[p.resolve()].add("Space")
    for p in sorted((share / "stellarium/skycultures").rglob("*.png")):
        labels[p.resolve()].update({"Art", "Space"})

    geo = share / "kgeography"
    for p in sorted(geo.rglob("*.png")):
        labels[p.resolve()].add("Flags" if "flags" in p.relative_to(geo).parts else "Maps")
    return {p: s for p, s in labels.items() if s}


def dhash(path: Path) -> tuple[str, int | None, str]:
    """64-bit difference hash of the image on white; None if Pillow cannot read it (SVG, damaged)."""
    try:
        with Image.open(path) as im:
            im.draft("L", (64, 64))
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im)
            g = im.convert("L").resize((9, 8), Image.BILINEAR)
        px = list(g.tobytes())
        bits = 0
        for r in range(8):
            for c in range(8):
                bits = (bits << 1) | (px[r * 9 + c] > px[r * 9 + c + 1])
        return str(path), bits, ""
    except Exception as e:  # noqa: BLE001 - any unreadable file is kept and left to the extractor
        return str(path), None, str(e)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("unpacked", type=Path, help="folder the .deb files were unpacked into")
    ap.add_argument("out", type=Path)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    root = args.unpacked.resolve()
    share = root / "usr/share"
    labels = collect(root)
    paths = sorted(labels, key=lambda p: str(p.relative_to(share)))
    with ProcessPoolExecutor(args.jobs) as pool:
        hashes = dict((Path(p), (h, err)) for p, h, err in pool.map(dhash, paths, chunksize=64))

    args.out.mkdir(parents=True, exist_ok=True)
    seen: dict[int, str] = {}
    kept, dups = [], []
    for p in paths:
        id_ = str(p.relative_to(share))
        h, _ = hashes[p]
        if h is not None and h in seen:
            dups.append((id_, seen[h], f"{h:016x}"))
            labels[Path(share / seen[h]).resolve()] |= labels[p]  # a duplicate's categories count for the kept copy
            continue
        if h is not None:
            seen[h] = id_
        kept.append((id_, p))

    with open(args.out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path"])
        w.writerows((i, str(p)) for i, p in kept)
    fine_counts, coarse_counts = Counter(), Counter()
    with open(args.out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "fine", "coarse"])
        for i, p in kept:
            fine = sorted(labels[p])
            coarse = coarse_of(set(fine))
            fine_counts.update(fine)
            coarse_counts.update(coarse)
            w.writerow([i, "|".join(fine), "|".join(coarse)])
    with open(args.out / "duplicates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["removed", "kept", "dhash"])
        w.writerows(dups)
    (args.out / "taxonomy.json").write_text(json.dumps(TAXONOMY, indent=2) + "\n")
    stats = {
        "images": len(kept),
        "near_duplicates_removed": len(dups),
        "unhashable (kept, left to the extractor)": sum(1 for _, (h, _) in hashes.items() if h is None),
        "fine": dict(fine_counts.most_common()),
        "coarse": dict(coarse_counts.most_common()),
    }
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{len(kept)} images ({len(dups)} near-duplicates removed), {len(fine_counts)} fine and "
          f"{len(coarse_counts)} coarse labels -> {args.out}")


if __name__ == "__main__":
    main()
