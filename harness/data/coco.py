"""The COCO instances layout (COCO 2017 and ``synthetic-scenes``)::

    <root>/train2017/<image>   <root>/val2017/<image>
    <root>/annotations/instances_train2017.json   <root>/annotations/instances_val2017.json

The harness split ``train`` is ``train2017`` and ``val`` is ``val2017``. The index lists the images of the
annotation file (for pre-training; no image-level labels); detection reads the annotations themselves through
``annotation_file`` (pycocotools).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.data.index import Index
from harness.data._layout import read_annotation_json, split_folder
from harness.errors import DataRootError

SPLIT_DIRS = {"train": "train2017", "val": "val2017"}
EXPECTED = ("<root>/{train2017,val2017}/<image> and <root>/annotations/instances_{train2017,val2017}.json "
            "(COCO instances)")


def split_dir(split: str) -> str:
    return split_folder("COCO", SPLIT_DIRS, split)


def annotation_path(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split_dir(split)}.json"


def load_annotation_json(dataset: str, root: Path, split: str) -> dict:
    path = annotation_path(root, split)
    doc = read_annotation_json(dataset, path, EXPECTED)
    missing_keys = [k for k in ("images", "annotations", "categories") if k not in doc]
    if missing_keys:
        raise DataRootError(f"dataset {dataset!r}: {path} has no {', '.join(missing_keys)}; expected a COCO "
                            f"instances file")
    return doc


def check_images_exist(dataset: str, folder: Path, file_names: list[str], source: Path) -> None:
    """One listing of ``folder`` (no stat per image), then one error naming the missing files, if any."""
    if not folder.is_dir():
        raise DataRootError(f"dataset {dataset!r}: {folder} is missing; expected {EXPECTED}")
    present = {e.name for e in os.scandir(folder)}
    missing = [f for f in file_names if f not in present and not ("/" in f and (folder / f).is_file())]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataRootError(f"dataset {dataset!r}: {source} references {len(missing)} image(s) missing from "
                            f"{folder}: {shown}")


def index_coco(dataset: str, root: Path, split: str) -> Index:
    path = annotation_path(root, split)
    doc = load_annotation_json(dataset, root, split)
    images = sorted(doc["images"], key=lambda im: im["id"])
    if not images:
        raise DataRootError(f"dataset {dataset!r}: {path} lists no images")
    names = [im["file_name"] for im in images]
    check_images_exist(dataset, root / split_dir(split), names, path)
    return Index(dataset, split, root, [f"{split_dir(split)}/{n}" for n in names], None, None)
