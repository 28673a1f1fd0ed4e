"""``synthetic-segmentation``: scene layouts with per-pixel labels, stuff and things (the ADE20k stand-in).

Written in the ADEChallengeData2016 layout (``images/{training,validation}/*.png``, label PNGs in
``annotations/...`` with 0 = unlabelled and classes 1..K, and ``objectInfo150.txt``), so the real ADE20k reader
reads it. A scene is a sky or wall region above a wavy horizon, grass and/or road below it, sometimes a
building block, then 1-4 textured shapes (things) that occlude the stuff and each other; small unlabelled
strokes are label 0. Each class has its own texture family, with colour, scale and pattern varying per image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synthetic import progress_bar
from harness.data.synthetic.shapes import paint_texture, random_color, shape_mask

STUFF = ("sky", "wall", "grass", "road")
THINGS = (("ball", "circle"), ("box", "square"), ("cone", "triangle"), ("star", "star"), ("cross", "cross"))
CLASS_NAMES = STUFF + tuple(name for name, _ in THINGS)  # label = position + 1
TINY = {"train_images": 300, "val_images": 60, "image_size": 64}
SPLIT_DIRS = {"train": "training", "val": "validation"}


def _label(name: str) -> int:
    return CLASS_NAMES.index(name) + 1


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    return rng.normal(0, sigma, (size, size, 1))


def stuff_texture(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """A full-frame float RGB texture of one stuff class (its own pattern family, random colours)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    if name == "sky":
        palette = [(90, 150, 230), (160, 170, 185), (240, 160, 110), (120, 190, 245)]
        top = np.array(palette[rng.integers(len(palette))]) + rng.normal(0, 15, 3)
        bottom = np.clip(top + rng.normal(50, 20, 3), 0, 255)
        t = (yy / size)[..., None]
        return top * (1 - t) + bottom * t + _noise(rng, size, 3)
    if name == "wall":
        base = np.array(random_color(rng, 110, 220)) * np.array([1.0, 0.85, 0.75])
        brick_h = int(rng.integers(3, 7))
        brick_w = brick_h * int(rng.integers(2, 4))
        row = yy // brick_h
        mortar = (yy % brick_h == 0) | (((xx + (row % 2) * brick_w // 2) % brick_w) == 0)
        img = np.where(mortar[..., None], base * 0.55, base) + _noise(rng, size, 6)
        return img
    if name == "grass":
        green = np.array([rng.uniform(30, 90), rng.uniform(110, 190), rng.uniform(20, 70)])
        blades = np.sin(xx * rng.uniform(1.5, 3.0) + np.sin(yy * 0.7) * 2)[..., None]
        return green + blades * 18 + _noise(rng, size, 14)
    if name == "road":
        grey = rng.uniform(70, 140)
        img = np.full((size, size, 3), grey) + _noise(rng, size, 8)
        lane_y = rng.uniform(0.6, 0.9) * size
        dash = ((xx // int(rng.integers(4, 9))) % 2 == 0) & (np.abs(yy - lane_y) < 1.0)
        return np.where(dash[..., None], np.array([235.0, 220, 90]), img)
    raise ValueError(f"unknown stuff class {name!r}")


def _stuff_layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """Per-pixel stuff labels: upper region, wavy horizon, lower region(s), maybe a building block."""
    yy, xx = np.mgrid[0:size, 0:size]
    horizon = rng.uniform(0.3, 0.6) * size + rng.uniform(1, 0.08 * size) * np.sin(xx / size * rng.uniform(3, 9) +
                                                                                 rng.uniform(0, 6.3))
    upper = _label("sky") if rng.random() < 0.7 else _label("wall")
    labels = np.where(yy < horizon, upper, _label("grass"))
    ground = rng.random()
    if ground < 0.35:
        labels[yy >= horizon] = _label("road")
    elif ground < 0.75:  # grass and road side by side, split by a slanted line
        split = rng.uniform(0.25, 0.75) * size + (yy - size / 2) * rng.uniform(-0.8, 0.8)
        left_is_road = rng.random() < 0.5
        road = (xx < split) if left_is_road else (xx >= split)
        labels[(yy >= horizon) & road] = _label("road")
    if upper == _label("sky") and rng.random() < 0.5:
        x0 = rng.uniform(0, 0.7) * size
        x1 = x0 + rng.uniform(0.15, 0.4) * size
        top = rng.uniform(0.05, 0.3) * size
        labels[(xx >= x0) & (xx < x1) & (yy >= top) & (yy < horizon)] = _label("wall")
    return labels.astype(np.uint8)


def draw_segmentation_scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray]:
    """An RGB image and its label map (uint8, 0 = unlabelled, 1..K)."""
    labels = _stuff_layout(rng, size)
    img = np.zeros((size, size, 3))
    for k, name in enumerate(STUFF, start=1):
        if (labels == k).any():
            img = np.where((labels == k)[..., None], stuff_texture(rng, name, size), img)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    for _ in range(int(rng.integers(1, 5))):
        t = int(rng.integers(len(THINGS)))
        r = rng.uniform(0.1, 0.25) * size
        cx, cy = rng.uniform(0.5 * r, size - 0.5 * r, 2)
        mask = shape_mask(THINGS[t][1], cx, cy, r, rng.uniform(0, 2 * np.pi), (size, size))
        paint_texture(canvas, mask, rng)
        labels[np.asarray(mask) > 0] = _label(THINGS[t][0])
    ignore = Image.new("L", (size, size), 0)
    draw_canvas, draw_ignore = ImageDraw.Draw(canvas), ImageDraw.Draw(ignore)
    for _ in range(int(rng.integers(0, 5))):  # unlabelled clutter: label 0
        x, y = rng.uniform(0, size, 2)
        x2, y2 = x + rng.uniform(-8, 8), y + rng.uniform(-8, 8)
        colour, width = random_color(rng), int(rng.integers(1, 3))
        draw_canvas.line([x, y, x2, y2], fill=colour, width=width)
        draw_ignore.line([x, y, x2, y2], fill=255, width=width)
    labels[np.asarray(ignore) > 0] = 0
    return canvas, labels


def write_class_file(root: Path, counts: dict[str, np.ndarray]) -> None:
    """``objectInfo150.txt`` as ADEChallengeData2016 has it: Idx, pixel ratio, image counts, name."""
    total_pixels = sum(int(c[0].sum()) for c in counts.values())
    lines = ["Idx\tRatio\tTrain\tVal\tName"]
    for k, name in enumerate(CLASS_NAMES, start=1):
        ratio = sum(int(c[0][k]) for c in counts.values()) / max(total_pixels, 1)
        lines.append(f"{k}\t{ratio:.4f}\t{int(counts['train'][1][k])}\t{int(counts['val'][1][k])}\t{name}")
    (root / "objectInfo150.txt").write_text("\n".join(lines) + "\n")


def generate_segmentation(root: Path, seed: int, train_images: int = TINY["train_images"],
                          val_images: int = TINY["val_images"], image_size: int = TINY["image_size"]) -> None:
    counts: dict[str, np.ndarray] = {}
    with progress_bar(train_images + val_images, f"generating {root.name}") as bar:
        for split_id, (split, count) in enumerate((("train", train_images), ("val", val_images))):
            image_dir = root / "images" / SPLIT_DIRS[split]
            label_dir = root / "annotations" / SPLIT_DIRS[split]
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, split_id])
            pixels = np.zeros(len(CLASS_NAMES) + 1, np.int64)
            images_with = np.zeros(len(CLASS_NAMES) + 1, np.int64)
            prefix = "ADE_train" if split == "train" else "ADE_val"
            for i in range(count):
                canvas, labels = draw_segmentation_scene(rng, image_size)
                stem = f"{prefix}_{i + 1:08d}"
                canvas.save(image_dir / f"{stem}.png", optimize=False)
                Image.fromarray(labels).save(label_dir / f"{stem}.png", optimize=False)
                hist = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES) + 1)
                pixels += hist
                images_with += hist > 0
                bar.update()
            counts[split] = (pixels, images_with)
    write_class_file(root, counts)
