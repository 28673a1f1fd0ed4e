"""The ImageFolder layout (ImageNet, Stanford Cars and DomainNet exported as folders): ``<split>/<class>/<image>``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.data.index import Index
from harness.data.roots import on_disk
from harness.errors import DataRootError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".JPEG")
EXPECTED = "<root>/<split>/<class>/<image>.{jpg,png,...} (ImageFolder)"


def split_folder(dataset: str, split: str) -> str:
    """The folder of a split: the split's name, unless the catalog maps it (``val`` -> ``test`` for sets
    whose only held-out split is a test split, e.g. Stanford Cars, DomainNet)."""
    from harness.data.registry import DATASETS

    extra = DATASETS.get(dataset).extra if dataset in DATASETS else {}
    return extra.get("split_dirs", {}).get(split, split)


def _declared_order(dataset: str, split_dir: Path, found: list[str]) -> list[str]:
    """The declared ``classes`` (their order is the label order), checked against the class folders on disk."""
    from harness.data.registry import DATASETS

    info = DATASETS.get(dataset) if dataset in DATASETS else None
    declared = info.extra.get("classes") if info else None
    if declared is None:
        return found
    missing, extra = sorted(set(declared) - set(found)), sorted(set(found) - set(declared))
    if missing or extra:
        raise DataRootError(f"{info.source}: datasets.{dataset}.classes: {split_dir} does not hold the declared "
                            f"classes (missing folders: {', '.join(missing) or 'none'}; undeclared folders: "
                            f"{', '.join(extra) or 'none'})")
    return list(declared)


def index_imagefolder(dataset: str, root: Path, split: str) -> Index:
    folder = split_folder(dataset, split)
    split_dir = root / folder
    if not split_dir.is_dir():
        raise DataRootError(f"dataset {dataset!r}: {split_dir} is missing; {on_disk(split_dir)}; expected {EXPECTED}")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataRootError(f"dataset {dataset!r}: {split_dir} has no class folders; expected {EXPECTED}")
    classes = _declared_order(dataset, split_dir, classes)
    items: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(e.name for e in os.scandir(split_dir / cls) if e.is_file() and e.name.endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DataRootError(f"dataset {dataset!r}: class folder {split_dir / cls} has no images")
        items.extend(f"{folder}/{cls}/{f}" for f in files)
        labels.extend([label] * len(files))
    return Index(dataset, split, root, items, np.asarray(labels, dtype=np.int64), classes)
