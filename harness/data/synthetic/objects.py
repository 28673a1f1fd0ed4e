"""``synthetic-objects``: an object-centric classification set (the ImageNet stand-in), in ImageFolder layout.

One large textured shape per image; the class is the shape. Colour, texture, scale, rotation, position,
background and clutter vary; a distractor shape of another class sometimes occludes part of the object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.synthetic import progress_bar
from harness.data.synthetic.shapes import SHAPES, add_clutter, background, paste_shape

TINY = {"num_classes": 10, "train_per_class": 200, "val_per_class": 50, "image_size": 64}


def draw_object_image(rng: np.random.Generator, label: int, size: int, num_classes: int):
    canvas = background(rng, size)
    add_clutter(canvas, rng, count=int(rng.integers(3, 9)), max_r=size * 0.05)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)
    paste_shape(canvas, SHAPES[label], cx, cy, r, rng.uniform(0, 2 * np.pi), rng)
    if rng.random() < 0.3:  # partial occlusion by a smaller object of another class
        other = (label + int(rng.integers(1, num_classes))) % num_classes
        r2 = r * rng.uniform(0.3, 0.5)
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
