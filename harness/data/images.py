"""Torch datasets over an index: images (and image-level labels) by relative path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from harness.data.index import Index


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


class ImageListDataset(Dataset):
    """Items of an index, optionally restricted to a manifest's positions; yields ``(transform(img), label)``.

    The label is -1 for unlabeled splits; pre-training methods that do not use labels ignore it.
    """

    def __init__(self, index: Index, positions: np.ndarray | None = None, transform: Callable | None = None):
        self.index = index
        self.positions = np.arange(len(index)) if positions is None else np.asarray(positions)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        pos = int(self.positions[i])
        img = load_rgb(self.index.root / self.index.items[pos])
        label = -1 if self.index.labels is None else int(self.index.labels[pos])
        return (self.transform(img) if self.transform else img), label

    @property
    def num_classes(self) -> int | None:
        return None if self.index.classes is None else len(self.index.classes)
