"""The ADE20k scene-parsing layout (ADEChallengeData2016 and ``synthetic-segmentation``)::

    <root>/images/training/<name>.jpg        <root>/annotations/training/<name>.png
    <root>/images/validation/<name>.jpg      <root>/annotations/validation/<name>.png
    <root>/objectInfo150.txt                 (optional: class list, tab-separated Idx Ratio Train Val Name)

Label PNGs hold 0 for "other / unlabelled" and 1..K for the classes. The harness split ``train`` is
``training``, ``val`` is ``validation``. The index lists the images (for pre-training; no image-level labels);
segmentation reads the label PNG next to each image through ``label_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.data.imagefolder import IMAGE_EXTENSIONS
from harness.data.index import Index
from harness.data._layout import split_folder
from harness.errors import DataRootError

SPLIT_DIRS = {"train": "training", "val": "validation"}
CLASS_FILE = "objectInfo150.txt"
EXPECTED = ("<root>/images/{training,validation}/<name>.jpg with <root>/annotations/{training,validation}/"
            "<name>.png (ADEChallengeData2016: label PNGs, 0 = unlabelled, 1..K = classes)")


def split_dir(split: str) -> str:
    return split_folder("ADE20k", SPLIT_DIRS, split)


def label_path(root: Path, item: str) -> Path:
    """``images/<split>/<name>.<ext>`` -> ``<root>/annotations/<split>/<name>.png``."""
    parts = Path(item).parts
    return root.joinpath("annotations", *parts[1:-1], Path(parts[-1]).stem + ".png")


def _require_dir(dataset: str, path: Path) -> None:
    if not path.is_dir():
        raise DataRootError(f"dataset {dataset!r}: {path} is missing; expected {EXPECTED}")


def index_ade20k(dataset: str, root: Path, split: str) -> Index:
    image_dir, ann_dir = root / "images" / split_dir(split), root / "annotations" / split_dir(split)
    _require_dir(dataset, image_dir)
    _require_dir(dataset, ann_dir)
    images = sorted(e.name for e in os.scandir(image_dir) if e.is_file() and e.name.endswith(IMAGE_EXTENSIONS))
    if not images:
        raise DataRootError(f"dataset {dataset!r}: {image_dir} has no images; expected {EXPECTED}")
    labels = {e.name for e in os.scandir(ann_dir)}
    missing = [f for f in images if Path(f).stem + ".png" not in labels]
    if missing:
        shown = ", ".join(Path(f).stem + ".png" for f in missing[:3])
        raise DataRootError(f"dataset {dataset!r}: {len(missing)} image(s) in {image_dir} have no label PNG in "
                            f"{ann_dir} (e.g. {shown})")
    return Index(dataset, split, root, [f"images/{split_dir(split)}/{f}" for f in images], None, None)


def read_class_names(root: Path) -> list[str] | None:
    """Class names 1..K from ``objectInfo150.txt`` (first name of each ``;`` list), or None if absent."""
    path = root / CLASS_FILE
    if not path.is_file():
        return None
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    if not rows or rows[0][0].strip() != "Idx":
        raise DataRootError(f"{path}: expected a tab-separated header 'Idx Ratio Train Val Name'")
    body = sorted(rows[1:], key=lambda r: int(r[0]))
    if [int(r[0]) for r in body] != list(range(1, len(body) + 1)):
        raise DataRootError(f"{path}: class indices must run 1..K")
    return [r[-1].strip().split(";")[0] for r in body]
