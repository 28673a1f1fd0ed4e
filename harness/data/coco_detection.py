"""COCO-format instance detection/segmentation data for downstream tasks (``coco``, ``synthetic-scenes``).

``CocoDetectionDataset(name, split, transform=None)[i]`` is ``(image, target)``:

* ``image``: float32 tensor ``3 x H x W`` in [0, 1] (not normalised; torchvision's Mask R-CNN normalises);
* ``target``: dict with ``boxes`` (float32 ``N x 4``, xyxy in pixels, clipped to the image), ``labels``
  (int64 ``N``, contiguous 1..K; 0 is the background), ``masks`` (uint8 ``N x H x W``, 0/1), ``area``
  (float32 ``N``, the annotation's area), ``iscrowd`` (int64 ``N``, all 0) and ``image_id`` (int, the COCO
  image id, as ``COCOeval`` needs it).

Crowd annotations and boxes of zero width or height are left out (as torchvision's detection references do);
images without objects are kept, with ``N = 0``. Images are in increasing COCO image id order.
``transform(image, target) -> (image, target)`` is applied jointly (see ``harness.data.joint_transforms``).

For evaluation: ``coco_annotation_file(name, split)`` is the instances JSON to give ``pycocotools.coco.COCO``,
and ``coco_categories(name)`` maps contiguous labels to COCO category ids and back (``CocoCategories``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data.images import load_rgb


@dataclass(frozen=True)
class CocoCategories:
    """Label ``k`` (1..K) is COCO category ``coco_ids[k - 1]``, named ``names[k - 1]``; 0 is the background."""

    coco_ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """K, the number of object categories (without the background)."""
        return len(self.coco_ids)

    @cached_property
    def _label_of(self) -> dict[int, int]:
        return {cid: k + 1 for k, cid in enumerate(self.coco_ids)}

    def label(self, coco_id: int) -> int:
        return self._label_of[int(coco_id)]

    def coco_id(self, label: int) -> int:
        if not 1 <= int(label) <= len(self.coco_ids):
            raise ValueError(f"label {label} is outside 1..{len(self.coco_ids)}")
        return self.coco_ids[int(label) - 1]


def _check_coco_dataset(name: str):
    from harness.data import dataset_info

    info = dataset_info(name)
    if info.layout != "coco":
        raise ValueError(f"dataset {name!r} is not in the COCO layout (it is {info.layout!r}, a {info.kind} dataset)")
    return info


def coco_annotation_file(name: str, split: str) -> Path:
    """The instances JSON of a COCO-layout dataset's split (checked: exists and references existing images)."""
    from harness.data import get_index, resolve_root
    from harness.data.coco import annotation_path

    _check_coco_dataset(name)
    get_index(name, split)  # validates the layout once (cached)
    return annotation_path(resolve_root(name), split)


def load_coco(path: Path):
    """``pycocotools.coco.COCO`` for ``path``, without its prints."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def categories_of(coco) -> CocoCategories:
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    return CocoCategories(tuple(int(c["id"]) for c in cats), tuple(str(c["name"]) for c in cats))


def coco_categories(name: str, split: str = "train") -> CocoCategories:
    return categories_of(load_coco(coco_annotation_file(name, split)))


def coco_target(coco, image_id: int, categories: CocoCategories, height: int, width: int) -> dict:
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)]
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    anns = [a for a, k in zip(anns, keep) if k]
    masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, height, width), np.uint8)
    return {
        "boxes": torch.from_numpy(boxes[keep]),
        "labels": torch.tensor([categories.label(a["category_id"]) for a in anns], dtype=torch.int64),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
        "area": torch.tensor([float(a["area"]) for a in anns], dtype=torch.float32),
        "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        "image_id": int(image_id),
    }


def image_to_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class CocoDetectionDataset(Dataset):
    def __init__(self, name: str, split: str, transform: Callable | None = None):
        from harness.data import resolve_root

        _check_coco_dataset(name)
        self.name, self.split, self.transform = name, split, transform
        self.annotation_file = coco_annotation_file(name, split)
        self.root = resolve_root(name)
        self.coco = load_coco(self.annotation_file)
        self.categories = categories_of(self.coco)
        self.image_ids = sorted(self.coco.getImgIds())

    @property
    def num_classes(self) -> int:
        """K object categories (labels 1..K; a Mask R-CNN head needs K + 1 outputs with the background)."""
        return self.categories.num_classes

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, i: int) -> Path:
        from harness.data.coco import split_dir

        info = self.coco.loadImgs([self.image_ids[i]])[0]
        return self.root / split_dir(self.split) / info["file_name"]

    def __getitem__(self, i: int):
        img = load_rgb(self.image_path(i))
        image = image_to_tensor(img)
        target = coco_target(self.coco, self.image_ids[i], self.categories, image.shape[1], image.shape[2])
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


def collate_detection(batch):
    """Detection batches are lists (images differ in size and object count): ``(images, targets)``."""
    return tuple(list(x) for x in zip(*batch))
