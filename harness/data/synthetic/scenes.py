"""``synthetic-scenes``: several small objects per image on cluttered backgrounds (the COCO stand-in).

Written in the COCO 2017 layout, so that the real COCO reader (pycocotools) reads it::

    <root>/train2017/<id:012d>.png   <root>/val2017/...
    <root>/annotations/instances_train2017.json   instances_val2017.json

Each image has 2-5 textured shapes of 5 categories (COCO-like non-contiguous category ids) at varied scale,
rotation and colour, painted in order, so later objects occlude earlier ones. An object's mask is its
*visible* part (compressed RLE), its box and area are those of that mask; placements that would hide more than
half of an earlier object are re-drawn, so every annotated object stays recognisable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synthetic import progress_bar
from harness.data.synthetic.shapes import add_clutter, background, paint_texture, random_color, shape_mask

CATEGORIES = ((1, "circle"), (3, "square"), (4, "triangle"), (7, "star"), (9, "cross"))
TINY = {"train_images": 300, "val_images": 60, "image_size": 96}
SPLIT_DIRS = {"train": "train2017", "val": "val2017"}
MIN_VISIBLE = 0.5  # an earlier object keeps at least this share of its pixels
MIN_PIXELS = 12


def cluttered_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A gradient with a few large textured patches (no category) and small strokes."""
    canvas = background(rng, size)
    for _ in range(int(rng.integers(1, 4))):
        patch = Image.new("L", (size, size), 0)
        x0, y0 = rng.uniform(-0.2, 0.8, 2) * size
        w, h = rng.uniform(0.2, 0.6, 2) * size
        ImageDraw.Draw(patch).rectangle([x0, y0, x0 + w, y0 + h], fill=int(rng.integers(90, 200)))
        paint_texture(canvas, patch, rng)
    add_clutter(canvas, rng, count=int(rng.integers(8, 20)), max_r=size * 0.035)
    return canvas


def _place_object(rng: np.random.Generator, size: int, visible: list[np.ndarray], full_sizes: list[int]):
    """Draw a placement that keeps every earlier object at least MIN_VISIBLE visible, or None."""
    for _ in range(20):
        cat = int(rng.integers(len(CATEGORIES)))
        r = rng.uniform(0.08, 0.2) * size
        cx, cy = rng.uniform(0.6 * r, size - 0.6 * r, 2)
        mask_img = shape_mask(CATEGORIES[cat][1], cx, cy, r, rng.uniform(0, 2 * np.pi), (size, size))
        mask = np.asarray(mask_img) > 0
        if mask.sum() < 2 * MIN_PIXELS:
            continue
        if all((v & ~mask).sum() >= max(MIN_VISIBLE * n, MIN_PIXELS) for v, n in zip(visible, full_sizes)):
            return cat, mask_img, mask
    return None


def draw_scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple[int, np.ndarray]]]:
    """An image and its objects as (category index, visible bool mask), bottom to top."""
    canvas = cluttered_background(rng, size)
    cats: list[int] = []
    visible: list[np.ndarray] = []
    full_sizes: list[int] = []
    for _ in range(int(rng.integers(2, 6))):
        placed = _place_object(rng, size, visible, full_sizes)
        if placed is None:
            continue
        cat, mask_img, mask = placed
        if rng.random() < 0.2:  # a flat, high-contrast object now and then
            canvas.paste(random_color(rng), (0, 0, size, size), mask_img)
        else:
            paint_texture(canvas, mask_img, rng)
        visible = [v & ~mask for v in visible] + [mask]
        full_sizes.append(int(mask.sum()))
        cats.append(cat)
    return canvas, list(zip(cats, visible))


def coco_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
        "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def generate_scenes(root: Path, seed: int, train_images: int = TINY["train_images"],
                    val_images: int = TINY["val_images"], image_size: int = TINY["image_size"]) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in CATEGORIES]
    image_id, ann_id = 1, 1
    with progress_bar(train_images + val_images, f"generating {root.name}") as bar:
        for split_id, (split, count) in enumerate((("train", train_images), ("val", val_images))):
            folder = root / SPLIT_DIRS[split]
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, split_id])
            images, annotations = [], []
            for _ in range(count):
                canvas, objects = draw_scene(rng, image_size)
                file_name = f"{image_id:012d}.png"
                canvas.save(folder / file_name, optimize=False)
                images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
                for cat, mask in objects:
                    annotations.append(coco_annotation(ann_id, image_id, CATEGORIES[cat][0], mask))
                    ann_id += 1
                image_id += 1
                bar.update()
            doc = {"info": {"description": f"synthetic-scenes (seed {seed})", "version": "1"}, "licenses": [],
                   "images": images, "annotations": annotations, "categories": categories}
            (root / "annotations" / f"instances_{SPLIT_DIRS[split]}.json").write_text(json.dumps(doc))
