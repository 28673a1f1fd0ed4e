"""``synthetic-fine``: a fine-grained classification set (the Stanford Cars stand-in), in ImageFolder layout.

Every image shows one side-on vehicle. The 24 classes ("models") are grouped into 4 makes that share their
silhouette (sedan, hatch, van, pickup: the coarse look every model of a make has); the 6 models of a make
differ only in details: wheel size (small / large) and trim (plain, a stripe along the body, two-tone body).
Like real models, each also has a signature paint: 60% of a model's vehicles are painted in its hue (one of 6
hues, the same 6 in every make, so colour alone narrows a vehicle down to one model per make, never to one
class), the others in a random colour. The shading of the paint, the trim colour, window and hub colours,
scale, position, tilt, facing direction, the background, clutter and occluding blobs vary and carry no class
information.

(Version 2: version 1 had 3 body types x 3 binary details (roof, wheels, tail fin) in random colours, smaller
and more tilted, with 30/10 images per class; a tiny ViT stayed at chance, 4-7.5% top-1, after 220
fine-tuning updates, so the tiny small-set studies measured nothing. See docs/data.md for the checks.)
"""

from __future__ import annotations

import colorsys
import itertools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synthetic import progress_bar
from harness.data.synthetic.shapes import add_clutter, background, random_color

MAKES = ("sedan", "hatch", "van", "pickup")  # super-classes: one silhouette each
WHEELS = {"small": 0.16, "large": 0.25}  # wheel radius, in units of the vehicle's half length
TRIMS = ("plain", "stripe", "twotone")
CLASSES = tuple(itertools.product(MAKES, WHEELS, TRIMS))
MODELS_PER_MAKE = len(WHEELS) * len(TRIMS)
SIGNATURE_PAINT = 0.6  # share of a model's vehicles painted in its signature hue
TINY = {"train_per_class": 50, "val_per_class": 20, "image_size": 64}

Polygon = list[tuple[float, float]]


def class_name(label: int) -> str:
    return "-".join(CLASSES[label])


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _disc(x: float, y: float, r: float, n: int) -> Polygon:
    return [(x + r * math.cos(t), y + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, n, endpoint=False)]


def glyph_parts(label: int) -> list[tuple[str, Polygon]]:
    """The parts of a class's vehicle in its own frame (x to the front, y up, ground at y = 0), in drawing order."""
    make, wheels, trim = CLASSES[label]
    base = 0.12  # the body's underside
    # (half length, body height, bonnet step x, bonnet height as a share of the body) and the cabin (rear x,
    # front x, height) of each make's silhouette; the van has no separate cabin
    half, h, step_x, step_h, cabin = {
        "sedan": (1.0, 0.30, 0.55, 0.9, (-0.55, 0.35, 0.30)),
        "hatch": (0.74, 0.36, 0.4, 0.85, (-0.74, 0.25, 0.34)),
        "van": (0.92, 0.62, 0.55, 0.55, None),
        "pickup": (1.0, 0.30, 0.6, 0.9, (-0.05, 0.45, 0.32)),
    }[make]
    top = base + h
    parts = [("body", [(-half, base), (half, base), (half, base + h * step_h), (step_x, top), (-half, top)])]
    if trim == "twotone":
        parts.append(("trim", _rect(-half, base, half, base + h * 0.45)))
    elif trim == "stripe":
        parts.append(("trim", _rect(-half, base + h * 0.5, half, base + h * 0.5 + 0.09)))
    if cabin is not None:
        rx, fx, ch = cabin
        if make == "hatch":  # the roof runs to the tail
            shell = [(rx, top), (fx + 0.1, top), (fx - 0.15, top + ch), (rx + 0.12, top + ch)]
        else:
            shell = [(rx, top), (fx, top), (fx - 0.05, top + ch), (rx, top + ch)]
        parts.append(("body", shell))
        parts.append(("window", [(x * 0.85 + (rx + fx) * 0.075, top + (y - top) * 0.75 + 0.03) for x, y in shell]))
        if make == "pickup":  # the tailgate of the open bed
            parts.append(("body", _rect(-half, top, -half + 0.08, top + 0.1)))
    else:  # the van's windows are cut into its tall body
        for x0 in (-0.75, -0.2):
            parts.append(("window", _rect(x0, base + h * 0.62, x0 + 0.45, base + h * 0.92)))
        parts.append(("window", _rect(0.35, base + h * 0.6, 0.6, base + h * 0.95)))
    parts.append(("light", _rect(half - 0.08, base + h * 0.55, half, base + h * 0.75)))
    parts.append(("tail", _rect(-half, base + h * 0.55, -half + 0.06, base + h * 0.8)))
    r = WHEELS[wheels]
    for x in (-0.62 * half, 0.62 * half):
        parts.append(("wheel", _disc(x, base - 0.02, r, 20)))
        parts.append(("hub", _disc(x, base - 0.02, 0.45 * r, 12)))
    return parts


def _hsv(rng: np.random.Generator, hue: float, saturation: tuple[float, float], value: tuple[float, float]):
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*saturation), rng.uniform(*value))
    return tuple(int(255 * c) for c in rgb)


def draw_fine_image(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    canvas = background(rng, size)
    add_clutter(canvas, rng, count=int(rng.integers(1, 5)), max_r=size * 0.04)
    scale = rng.uniform(0.36, 0.46) * size
    angle = rng.uniform(-0.08, 0.08)
    facing = 1.0 if rng.random() < 0.5 else -1.0
    cx, cy = rng.uniform(0.44, 0.56) * size, rng.uniform(0.6, 0.72) * size
    ca, sa = math.cos(angle), math.sin(angle)

    def to_pixels(points: Polygon) -> Polygon:
        out = []
        for x, y in points:
            x, y = x * facing * scale, -y * scale
            out.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
        return out

    hue = rng.random()
    if rng.random() < SIGNATURE_PAINT:
        hue = (label % MODELS_PER_MAKE) / MODELS_PER_MAKE + rng.normal(0, 0.03)
    colours = {"body": _hsv(rng, hue, (0.3, 1.0), (0.4, 1.0)),
               "trim": _hsv(rng, hue + rng.uniform(0.3, 0.7), (0.6, 1.0), (0.6, 1.0)),
               "window": random_color(rng, 20, 80), "wheel": random_color(rng, 0, 40),
               "hub": random_color(rng, 170, 240), "light": (255, 240, 150), "tail": (220, 30, 30)}
    draw = ImageDraw.Draw(canvas)
    for part, polygon in glyph_parts(label):
        draw.polygon(to_pixels(polygon), fill=colours[part])
    if rng.random() < 0.15:  # an occluding blob
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.05, 0.11) * size
        draw.ellipse([x - r, y - r, x + r, y + r], fill=random_color(rng))
    noise = rng.normal(0, 4, (size, size, 3))
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
