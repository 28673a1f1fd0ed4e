"""The iNaturalist-2019 layout::

    <root>/train2019.json   <root>/val2019.json   <root>/train_val2019/<super>/<category>/<image>.jpg

Each JSON has ``images`` (``id``, ``file_name`` relative to the root), ``annotations`` (``image_id``,
``category_id``: one per image) and ``categories`` (``id``, ``name``). Labels are the categories in increasing
id order (0..K-1), the same for train and val. The harness split ``train`` reads train2019.json, ``val``
val2019.json.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness.data.index import Index
from harness.data._layout import read_annotation_json
from harness.errors import DataRootError

SPLIT_FILES = {"train": "train2019.json", "val": "val2019.json"}
EXPECTED = ("<root>/{train2019,val2019}.json (images, annotations, categories) and the images they name, "
            "relative to <root> (iNaturalist 2019)")


def missing_files(root: Path, relative_paths: list[str]) -> list[str]:
    """Files of ``relative_paths`` absent under ``root``, with one listing per folder (no stat per file)."""
    by_dir: dict[str, list[str]] = defaultdict(list)
    for rel in relative_paths:
        head, _, name = rel.rpartition("/")
        by_dir[head].append(name)
    missing = []
    for head, names in by_dir.items():
        folder = root / head
        present = {e.name for e in os.scandir(folder)} if folder.is_dir() else set()
        missing.extend(f"{head}/{n}" if head else n for n in names if n not in present)
    return missing


def index_inat2019(dataset: str, root: Path, split: str) -> Index:
    if split not in SPLIT_FILES:
        raise ValueError(f"iNaturalist-2019 layout has no split {split!r} (splits: {', '.join(SPLIT_FILES)})")
    path = root / SPLIT_FILES[split]
    doc = read_annotation_json(dataset, path, EXPECTED)
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DataRootError(f"dataset {dataset!r}: {path} has no {key!r}; expected {EXPECTED}")
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: k for k, c in enumerate(categories)}
    category_of = {a["image_id"]: a["category_id"] for a in doc["annotations"]}
    images = sorted(doc["images"], key=lambda im: im["id"])
    unlabelled = [im["file_name"] for im in images if category_of.get(im["id"]) not in label_of]
    if unlabelled:
        raise DataRootError(f"dataset {dataset!r}: {path}: {len(unlabelled)} image(s) have no annotation with a "
                            f"known category (e.g. {unlabelled[0]})")
    items = [im["file_name"] for im in images]
    if missing := missing_files(root, items):
        raise DataRootError(f"dataset {dataset!r}: {path} references {len(missing)} image(s) missing under {root} "
                            f"(e.g. {', '.join(missing[:3])})")
    labels = np.asarray([label_of[category_of[im["id"]]] for im in images], dtype=np.int64)
    return Index(dataset, split, root, items, labels, [str(c["name"]) for c in categories])
