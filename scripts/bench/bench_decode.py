#!/usr/bin/env python3
"""Decode + preprocess throughput of the extractor (`extractor bench-decode`: its own pipeline,
no inference) against Pillow with draft() in a process pool of as many workers (the reference a
user would write: decode, resize the short side to 256, centre crop 224), same images, same
machine, interleaved rounds, median. Then the stages of the extractor alone (bytes read, decoded,
prepared: the decoder's own rate is the floor), what decoding only the centre crop saves, and the
embedding agreement of reduced-scale decoding (decode_fidelity.py).

    bench_decode.py [--threads 2] [--rounds 3] [--repeat 2] [--sets jpg300,jpg640,...] [--no-fidelity]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / ".cache/bench"
PY = sys.executable
EXTRACTOR = ROOT / "target/release/extractor"

# name: (description, maker command)
SETS = {
    "jpg300": ("JPEG, 300 px long side (WIT's released size)", ["make_photo_set.py", "--n", "600", "--long", "300"]),
    "jpg640": ("JPEG, 640 px", ["make_photo_set.py", "--n", "600", "--long", "640"]),
    "jpg2048": ("JPEG, 2048 px, enlarged small photos (little fine detail)",
                ["make_photo_set.py", "--n", "150", "--long", "2048"]),
    "orig2048": ("JPEG, 2048 px originals (real detail)", ["make_originals_set.py", "--n", "150", "--long", "2048"]),
    "orig4000": ("JPEG, 4000 px originals", ["make_originals_set.py", "--n", "60", "--long", "4000"]),
    "webp640": ("WebP photos, 640 px", ["make_photo_set.py", "--n", "400", "--long", "640", "--format", "webp"]),
    "png640": ("PNG photos, 640 px", ["make_photo_set.py", "--n", "300", "--long", "640", "--format", "png"]),
}


def manifest(name: str) -> Path:
    m = BENCH / name / "manifest.csv"
    if not m.exists():
        script, *args = SETS[name][1]
        subprocess.run([PY, str(ROOT / "scripts/bench" / script), str(BENCH / name), *args], check=True)
    return m


def extractor(m: Path, threads: int, repeat: int, *extra: str) -> float:
    out = subprocess.run([str(EXTRACTOR), "bench-decode", str(m), "--threads", str(threads), "--repeat",
                          str(repeat), "--json", "--quiet", *extra], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["images_per_s"]


def pillow(m: Path, workers: int, repeat: int) -> float:
    out = subprocess.run([PY, str(ROOT / "scripts/bench/pillow_decode.py"), str(m), "--workers", str(workers),
                          "--repeat", str(repeat)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["images_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--no-fidelity", action="store_true")
    ap.add_argument("--json", default=str(BENCH / "decode-results.json"))
    a = ap.parse_args()
    sets = a.sets.split(",")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}; {platform.node()}; {time.strftime('%Y-%m-%d')}")
    print(f"threads / Pillow workers: {a.threads}; rounds: {a.rounds}, each {a.repeat} passes over the set\n")
    results = {}
    for name in sets:
        m = manifest(name)
        n = sum(1 for _ in open(m)) - 1
        ours, ref = [], []
        for _ in range(a.rounds):
            ours.append(extractor(m, a.threads, a.repeat))
            ref.append(pillow(m, a.threads, a.repeat))
        r = {"images": n, "extractor": statistics.median(ours), "pillow": statistics.median(ref),
             "extractor_runs": ours, "pillow_runs": ref}
        r["ratio"] = r["extractor"] / r["pillow"]
        stages = {}
        for stage in ("read", "decode"):
            stages[stage] = statistics.median(extractor(m, a.threads, a.repeat, "--stage", stage) for _ in range(a.rounds))
        if name.startswith(("jpg", "orig")):
            stages["prepare_whole_images"] = statistics.median(
                extractor(m, a.threads, a.repeat, "--whole-images") for _ in range(a.rounds))
        r["stages"] = stages
        results[name] = r
        print(f"  {name}: extractor {r['extractor']:.1f}/s, Pillow {r['pillow']:.1f}/s, {r['ratio']:.2f}x", flush=True)

    t = a.threads
    print("\n| image set | images | extractor img/s (per core) | Pillow-draft img/s (per core) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name in sets:
        r = results[name]
        print(f"| {SETS[name][0]} | {r['images']} | {r['extractor']:.0f} ({r['extractor'] / t:.0f}) "
              f"| {r['pillow']:.0f} ({r['pillow'] / t:.0f}) | **{r['ratio']:.2f}x** |")
    print("\nThe extractor's stages (img/s): the decoders' own rate is the floor of the whole.\n")
    print("| image set | read | read + decode | + preprocess (embed's input) | share of decode-only rate "
          "| JPEG decoded whole instead of the crop's region |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in sets:
        r, s = results[name], results[name]["stages"]
        whole = s.get("prepare_whole_images")
        whole_txt = f"{whole:.0f} ({r['extractor'] / whole:.2f}x faster in part)" if whole else "—"
        print(f"| {name} | {s['read']:.0f} | {s['decode']:.0f} | {r['extractor']:.0f} "
              f"| {r['extractor'] / s['decode']:.0%} | {whole_txt} |")
    Path(a.json).write_text(json.dumps(results, indent=1))
    if not a.no_fidelity:
        for name in ("orig2048", "orig4000"):
            if name in sets:
                print(f"\nEmbedding agreement with a full decode, {SETS[name][0]} ({results[name]['images']} images):\n")
                sys.stdout.flush()
                subprocess.run([PY, str(ROOT / "scripts/bench/decode_fidelity.py"), str(manifest(name)),
                                "--margins", "1,2,3,4"], check=True)


if __name__ == "__main__":
    main()
