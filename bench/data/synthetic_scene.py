"""The synthetic glyph world's vocabulary, shared by its generators (:mod:`bench.data.synthetic`,
:mod:`bench.data.synthetic_judged`) and the embedded model: the categories (real COCO ids and names, each
drawn as a coloured glyph), the planted bias pairs (anchor → partner), and the caption template.

Changing anything here changes the world's files (and the generator version must be bumped).
"""

from __future__ import annotations

import random

# (COCO id, COCO name, glyph shape, RGB colour)
CATEGORIES: list[tuple[int, str, str, tuple[int, int, int]]] = [
    (18, "dog", "circle", (160, 82, 45)),
    (17, "cat", "triangle", (255, 140, 0)),
    (3, "car", "square", (220, 30, 30)),
    (6, "bus", "wide", (240, 220, 20)),
    (62, "chair", "cross", (40, 90, 240)),
    (63, "couch", "ring", (170, 60, 200)),
    (47, "cup", "small", (0, 210, 210)),
    (44, "bottle", "tall", (30, 180, 60)),
    (48, "fork", "x", (245, 245, 245)),
    (67, "dining table", "bar", (210, 170, 110)),
]
BIAS_PAIRS = {"fork": "dining table", "cup": "bottle", "chair": "couch"}


def article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def caption(objs: list[str], rng: random.Random | None = None) -> str:
    parts = [f"{article(o)} {o}" for o in objs]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"The image shows {listed}."
