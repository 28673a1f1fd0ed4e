"""``synthetic-objects``: an object-centric classification set (the ImageNet stand-in), in ImageFolder layout.

One large textured shape per image; the class is the shape. Like real object classes, a class also has a
typical colour and texture, which are only tendencies (a quarter of the objects get a random hue, 30% a random
texture), so the shape must be learned too. Scale, rotation, position, background and clutter vary; a
smaller shape of another class sometimes occludes part of the object.

(Version 2: in version 1 colour and texture were random for every image; a tiny ViT stayed near chance after
the few hundred updates a CPU allows, so the tiny studies measured nothing.)
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from harness.data.synthetic import progress_bar
from harness.data.synthetic.shapes import SHAPES, add_clutter, background, paint_texture, paste_shape, shape_mask

TINY = {"num_classes": 10, "train_per_class": 200, "val_per_class": 50, "image_size": 64}


def class_color(rng: np.random.Generator, label: int, num_classes: int) -> tuple[int, int, int]:
    """The class's hue (jittered) for 75% of the objects, a random hue otherwise; random saturation and value."""
    hue = (label / num_classes + rng.normal(0, 0.04)) % 1.0 if rng.random() < 0.75 else rng.random()
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
    return tuple(int(255 * c) for c in rgb)


def draw_object_image(rng: np.random.Generator, label: int, size: int, num_classes: int):
    canvas = background(rng, size)
    add_clutter(canvas, rng, count=int(rng.integers(2, 6)), max_r=size * 0.04)
    r = rng.uniform(0.28, 0.42) * size
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)
    kind = label % 4 if rng.random() < 0.7 else int(rng.integers(0, 4))
    mask = shape_mask(SHAPES[label], cx, cy, r, rng.uniform(0, 2 * np.pi), canvas.size)
    paint_texture(canvas, mask, rng, kind=kind, base_color=class_color(rng, label, num_classes))
    if rng.random() < 0.2:  # partial occlusion by a smaller object of another class
        other = (label + int(rng.integers(1, num_classes))) % num_classes
        r2 = r * rng.uniform(0.25, 0.4)
        ox, oy = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
        paste_shape(canvas, SHAPES[other], ox, oy, r2, rng.uniform(0, 2 * np.pi), rng)
    return canvas


def generate_objects(root: Path, seed: int, num_classes: int = TINY["num_classes"],
                     train_per_class: int = TINY["train_per_class"], val_per_class: int = TINY["val_per_class"],
                     image_size: int = TINY["image_size"]) -> None:
    if num_classes > len(SHAPES):
        raise ValueError(f"synthetic-objects has at most {len(SHAPES)} classes")
    jobs = [("train", train_per_class, 0), ("val", val_per_class, 1)]
    total = num_classes * (train_per_class + val_per_class)
    with progress_bar(total, f"generating {root.name}") as bar:
        for split, per_class, split_id in jobs:
            for label in range(num_classes):
                folder = root / split / f"{label:02d}-{SHAPES[label]}"
                folder.mkdir(parents=True, exist_ok=True)
                rng = np.random.default_rng([seed, split_id, label])
                for i in range(per_class):
                    draw_object_image(rng, label, image_size, num_classes).save(folder / f"{i:05d}.png", optimize=False)
                    bar.update()
