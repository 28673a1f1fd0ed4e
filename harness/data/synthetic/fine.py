"""``synthetic-fine``: a fine-grained classification set (the Stanford Cars stand-in), in ImageFolder layout.

Every image shows one vehicle-like glyph; the 24 classes are the combinations of four subtle attributes
(body: sedan / hatch / van, roof: flat / sloped, wheels: small / large, tail fin: no / yes), so classes share
most of their pixels, as car models do. Colour, scale, position, tilt, facing direction, background, clutter
and occluding blobs vary and carry no class information.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synthetic import progress_bar
from harness.data.synthetic.shapes import add_clutter, background, random_color

BODIES = {"sedan": (1.0, 0.32), "hatch": (0.8, 0.42), "van": (0.95, 0.6)}  # half length, height
ROOFS = ("flat", "sloped")
WHEELS = {"small": 0.15, "large": 0.23}
FINS = ("nofin", "fin")
CLASSES = tuple(itertools.product(BODIES, ROOFS, WHEELS, FINS))
TINY = {"train_per_class": 30, "val_per_class": 10, "image_size": 64}


def class_name(label: int) -> str:
    return "-".join(CLASSES[label])


def glyph_polygons(label: int) -> list[tuple[str, list[tuple[float, float]]]]:
    """The parts of a class's glyph in its own frame (x to the front, y up, ground at y = 0)."""
    body, roof, wheels, fin = CLASSES[label]
    half, height = BODIES[body]
    base = WHEELS[wheels] * 0.6
    parts = [("body", [(-half, base), (half, base), (half, base + height), (-half, base + height)])]
    top = base + height
    cabin_h = 0.3
    if roof == "flat":
        cabin = [(-0.55 * half, top), (0.45 * half, top), (0.45 * half, top + cabin_h), (-0.55 * half, top + cabin_h)]
    else:
        cabin = [(-0.6 * half, top), (0.6 * half, top), (0.25 * half, top + cabin_h), (-0.35 * half, top + cabin_h)]
    parts.append(("body", cabin))
    parts.append(("window", [(x * 0.8 + 0.02, top + (y - top) * 0.75 + 0.04) for x, y in cabin]))
    if fin == "fin":
        parts.append(("body", [(-half, top), (-half + 0.25, top), (-half, top + 0.28)]))
    for x in (-0.6 * half, 0.6 * half):
        r = WHEELS[wheels]
        parts.append(("wheel", [(x + r * math.cos(t), base + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 16)]))
    return parts


def draw_fine_image(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    canvas = background(rng, size)
    add_clutter(canvas, rng, count=int(rng.integers(3, 10)), max_r=size * 0.05)
    scale = rng.uniform(0.28, 0.42) * size
    angle = rng.uniform(-0.25, 0.25)
    facing = 1.0 if rng.random() < 0.5 else -1.0
    cx, cy = rng.uniform(0.4, 0.6) * size, rng.uniform(0.5, 0.7) * size
    ca, sa = math.cos(angle), math.sin(angle)

    def to_pixels(points):
        out = []
        for x, y in points:
            x, y = x * facing * scale, -y * scale
            out.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
        return out

    colours = {"body": random_color(rng, 30, 240), "window": random_color(rng, 20, 90), "wheel": random_color(rng, 0, 50)}
    draw = ImageDraw.Draw(canvas)
    for part, polygon in glyph_polygons(label):
        draw.polygon(to_pixels(polygon), fill=colours[part])
    if rng.random() < 0.3:  # an occluding blob
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.06, 0.14) * size
        draw.ellipse([x - r, y - r, x + r, y + r], fill=random_color(rng))
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(canvas, float) + noise, 0, 255).astype(np.uint8))


def generate_fine(root: Path, seed: int, train_per_class: int = TINY["train_per_class"],
                  val_per_class: int = TINY["val_per_class"], image_size: int = TINY["image_size"],
                  num_classes: int = len(CLASSES)) -> None:
    if num_classes > len(CLASSES):
        raise ValueError(f"synthetic-fine has at most {len(CLASSES)} classes")
    with progress_bar(num_classes * (train_per_class + val_per_class), f"generating {root.name}") as bar:
        for split_id, (split, per_class) in enumerate((("train", train_per_class), ("val", val_per_class))):
            for label in range(num_classes):
                folder = root / split / f"{label:02d}-{class_name(label)}"
                folder.mkdir(parents=True, exist_ok=True)
                rng = np.random.default_rng([seed, split_id, label])
                for i in range(per_class):
                    draw_fine_image(rng, label, image_size).save(folder / f"{i:05d}.png", optimize=False)
                    bar.update()
