"""Contact sheets: a PNG grid of samples of a dataset, read through the same loaders the jobs use.

Classification tiles are captioned with their class; detection tiles show each object's visible mask and box
in its category's colour; segmentation tiles show the image next to its label map (black = ignore).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

TILE = 160
PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
], dtype=np.uint8)


def colour(k: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE[k % len(PALETTE)])


def _to_pil(image) -> Image.Image:
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def _tile(img: Image.Image, caption: str = "") -> Image.Image:
    """The image scaled to TILE pixels high (nearest neighbour: tiny images stay sharp), with a caption."""
    img = img.resize((max(1, TILE * img.width // img.height), TILE), Image.NEAREST)
    out = Image.new("RGB", (img.width, img.height + 14), (255, 255, 255))
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((2, img.height + 1), caption[:40], fill=(0, 0, 0))
    return out


def evenly_spaced(n: int, count: int) -> list[int]:
    """``count`` positions spread over ``n`` items, first and last included: the samples a contact sheet shows."""
    return [int(i) for i in np.linspace(0, n - 1, count).round()]


def classification_tiles(name: str, split: str, count: int) -> list[Image.Image]:
    from harness.data import get_index
    from harness.data.images import load_rgb

    index = get_index(name, split)
    positions = evenly_spaced(len(index), count)
    tiles = []
    for p in positions:
        caption = index.classes[index.labels[p]] if index.labels is not None else Path(index.items[p]).name
        tiles.append(_tile(load_rgb(index.root / index.items[p]), caption))
    return tiles


def _dataset_tiles(ds, count: int, render) -> list[Image.Image]:
    """Tiles of ``count`` evenly spaced samples of ``ds``; ``render(*sample) -> (image, caption)``."""
    return [_tile(*render(*ds[i])) for i in evenly_spaced(len(ds), count)]


def detection_tiles(name: str, split: str, count: int) -> list[Image.Image]:
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    from harness.data.coco_detection import CocoDetectionDataset

    ds = CocoDetectionDataset(name, split)

    def render(image, target):
        colours = [colour(int(label)) for label in target["labels"]]
        pixels = (image * 255).round().to(torch.uint8)
        if colours:
            pixels = draw_segmentation_masks(pixels, target["masks"].bool(), alpha=0.55, colors=colours)
            pixels = draw_bounding_boxes(pixels, target["boxes"], colors=colours)
        names = sorted({ds.categories.names[int(l) - 1] for l in target["labels"]})
        return _to_pil(pixels.float() / 255), f"{len(colours)}: {','.join(names)}"

    return _dataset_tiles(ds, count, render)


def segmentation_tiles(name: str, split: str, count: int) -> list[Image.Image]:
    from harness.data.joint_transforms import IGNORE_INDEX
    from harness.data.segmentation import SegmentationDataset

    ds = SegmentationDataset(name, split)

    def render(image, label):
        lbl = label.numpy()
        rgb = PALETTE[lbl % len(PALETTE)]
        rgb[lbl == IGNORE_INDEX] = 0
        pair = Image.new("RGB", (image.shape[2] * 2 + 2, image.shape[1]), (255, 255, 255))
        pair.paste(_to_pil(image), (0, 0))
        pair.paste(Image.fromarray(rgb), (image.shape[2] + 2, 0))
        return pair, ",".join(ds.class_names[k] for k in np.unique(lbl) if k != IGNORE_INDEX)

    return _dataset_tiles(ds, count, render)


def contact_sheet(name: str, out: Path, split: str = "train", count: int = 16, columns: int | None = None) -> Path:
    from harness.data import dataset_info

    kind = dataset_info(name).kind
    make = {"classification": classification_tiles, "detection": detection_tiles,
            "segmentation": segmentation_tiles}[kind]
    tiles = make(name, split, count)
    columns = columns or (4 if kind == "segmentation" else int(np.ceil(np.sqrt(len(tiles)))))
    rows = int(np.ceil(len(tiles) / columns))
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (columns * (w + 4), rows * (h + 4) + 18), (255, 255, 255))
    ImageDraw.Draw(sheet).text((4, 3), f"{name} ({kind}), split {split}", fill=(0, 0, 0))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % columns) * (w + 4), 18 + (k // columns) * (h + 4)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
