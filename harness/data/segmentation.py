"""Semantic segmentation data for downstream tasks (``ade20k``, ``synthetic-segmentation``).

``SegmentationDataset(name, split, transform=None)[i]`` is ``(image, label)``:

* ``image``: float32 tensor ``3 x H x W`` in [0, 1] (not normalised; add ``joint_transforms.Normalize``);
* ``label``: int64 tensor ``H x W`` with classes ``0..K-1`` and ``IGNORE_INDEX`` (255) for unlabelled pixels.
  This is ADE20k's "reduce zero label" convention: file value 0 (other) -> 255, file value k -> k - 1.

``num_classes`` is K (150 for ADE20k) and ``class_names`` their names (from ``objectInfo150.txt`` when the root
has one). ``transform(image, label) -> (image, label)`` is applied jointly (``harness.data.joint_transforms``).
Images are in the index's order (sorted file names).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from harness.data.coco_detection import image_to_tensor
from harness.data.images import load_rgb
from harness.data.joint_transforms import IGNORE_INDEX
from harness.errors import DataRootError


def reduce_zero_label(label_file_values: np.ndarray) -> np.ndarray:
    """File values (0 = unlabelled, 1..K) -> training labels (255 = ignore, 0..K-1)."""
    values = label_file_values.astype(np.int64)
    return np.where(values == 0, IGNORE_INDEX, values - 1)


def segmentation_classes(name: str) -> list[str]:
    """The K class names of an ADE20k-layout dataset (objectInfo150.txt, else the catalog's class count)."""
    from harness.data import dataset_info, resolve_root
    from harness.data.ade20k import read_class_names

    info = dataset_info(name)
    if info.layout != "ade20k":
        raise ValueError(f"dataset {name!r} is not in the ADE20k layout (it is {info.layout!r}, a {info.kind} dataset)")
    names = read_class_names(resolve_root(name))
    if names is None:
        if "num_classes" not in info.extra:
            raise DataRootError(f"dataset {name!r}: no objectInfo150.txt in its root and no class count in the catalog")
        names = [f"class{k}" for k in range(1, info.extra["num_classes"] + 1)]
    return names


class SegmentationDataset(Dataset):
    def __init__(self, name: str, split: str, transform: Callable | None = None):
        from harness.data import get_index

        self.class_names = segmentation_classes(name)
        self.index = get_index(name, split)
        self.name, self.split, self.transform = name, split, transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        from harness.data.ade20k import label_path

        item = self.index.items[i]
        image = image_to_tensor(load_rgb(self.index.root / item))
        with Image.open(label_path(self.index.root, item)) as lbl:
            values = np.asarray(lbl)
        if values.ndim != 2 or values.shape != tuple(image.shape[1:]):
            raise ValueError(f"{label_path(self.index.root, item)}: label map of shape {values.shape} does not "
                             f"match its image ({tuple(image.shape[1:])})")
        label = torch.from_numpy(reduce_zero_label(values))
        if values.max() > self.num_classes:
            raise ValueError(f"{label_path(self.index.root, item)}: label {values.max()} > K = {self.num_classes}")
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label
