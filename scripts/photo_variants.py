"""Distinct photos derived from the real photographs shipped in scikit-image: random crops (60-100%
of each side), flips, colour jitter, resized so the long side is `long` px. Shared by the input
fixtures (scripts/make_input_fixtures.py) and the benchmark image sets (scripts/bench/make_photo_set.py).
"""

from pathlib import Path

import skimage
from PIL import Image, ImageEnhance


def photo_variants(photos, n, long, rng):
    """Yields `n` pairs (name of the photograph it was cut from, RGB image), dealing the available
    `photos` in turn. Draws from `rng` before each yield only, so a caller may draw from the same
    generator between images (e.g. an encoding quality) and get the same stream as before."""
    data = Path(skimage.__file__).parent / "data"
    names = [p for p in photos if (data / p).exists()]
    srcs = [Image.open(data / p).convert("RGB") for p in names]
    for i in range(n):
        im = srcs[i % len(srcs)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        c = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            c = c.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        c = ImageEnhance.Color(c).enhance(rng.uniform(0.7, 1.3))
        s = long / max(c.size)
        yield names[i % len(names)], c.resize((max(1, round(c.size[0] * s)), max(1, round(c.size[1] * s))), Image.BICUBIC)
