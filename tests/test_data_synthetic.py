"""Synthetic stand-ins: deterministic bytes, and read back by the real loaders of the formats they imitate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.synthetic.fine import CLASSES, generate_fine
from harness.data.synthetic.objects import generate_objects
from harness.data.synthetic.scenes import generate_scenes
from harness.data.synthetic.segmentation import CLASS_NAMES, generate_segmentation

SMALL = {
    "objects": (generate_objects, {"num_classes": 3, "train_per_class": 2, "val_per_class": 1, "image_size": 32}),
    "scenes": (generate_scenes, {"train_images": 4, "val_images": 2, "image_size": 64}),
    "segmentation": (generate_segmentation, {"train_images": 3, "val_images": 2, "image_size": 48}),
    "fine": (generate_fine, {"train_per_class": 1, "val_per_class": 1, "image_size": 32, "num_classes": 4}),
}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, name):
    generate, sizes = SMALL[name]
    generate(tmp_path / "a", 7, **sizes)
    generate(tmp_path / "b", 7, **sizes)
    generate(tmp_path / "c", 8, **sizes)
    a, b, c = (tree_digest(tmp_path / x) for x in "abc")
    assert len(a) > 3
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_scenes_validated_by_pycocotools():
    from pycocotools import mask as mask_utils

    from harness.data.coco_detection import coco_annotation_file, load_coco

    for split in ("train", "val"):
        coco = load_coco(coco_annotation_file("synthetic-scenes", split))
        img_ids = coco.getImgIds()
        assert len(img_ids) == {"train": 300, "val": 60}[split]
        anns = coco.loadAnns(coco.getAnnIds())
        assert len({a["id"] for a in anns}) == len(anns)
        per_image = np.bincount([a["image_id"] for a in anns])[img_ids]
        assert per_image.min() >= 1 and per_image.max() <= 5 and per_image.mean() > 2.5
        for ann in anns[:200]:
            img = coco.loadImgs([ann["image_id"]])[0]
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"] and w > 0 and h > 0
            mask = coco.annToMask(ann)
            assert mask.shape == (img["height"], img["width"])
            assert mask.sum() == ann["area"] > 0
            rle = mask_utils.encode(np.asfortranarray(mask))
            assert [round(v) for v in mask_utils.toBbox(rle)] == [round(v) for v in ann["bbox"]]
        assert sorted(c["id"] for c in coco.loadCats(coco.getCatIds())) == [1, 3, 4, 7, 9]


def test_scene_masks_are_visible_parts_and_disjoint():
    """Occluded objects keep only their visible pixels, so the masks of one image never overlap."""
    from harness.data.coco_detection import CocoDetectionDataset

    ds = CocoDetectionDataset("synthetic-scenes", "val")
    occluded = 0
    for i in range(20):
        _, t = ds[i]
        total = t["masks"].sum(0)
        assert total.max() <= 1
        box_area = (t["boxes"][:, 2] - t["boxes"][:, 0]) * (t["boxes"][:, 3] - t["boxes"][:, 1])
        occluded += int((t["masks"].flatten(1).sum(1) < 0.6 * box_area).sum())
    assert occluded > 0


def test_segmentation_set_read_by_ade_reader():
    from harness.data import get_index
    from harness.data.segmentation import SegmentationDataset

    index = get_index("synthetic-segmentation", "train")
    assert index.labels is None and all(i.startswith("images/training/") for i in index.items)
    ds = SegmentationDataset("synthetic-segmentation", "val")
    assert ds.num_classes == len(CLASS_NAMES) and ds.class_names == list(CLASS_NAMES)
    seen = set()
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 64, 64) and 0.0 <= image.min() and image.max() <= 1.0
        values = set(label.unique().tolist())
        assert values <= set(range(ds.num_classes)) | {255}
        seen |= values
    assert seen == set(range(ds.num_classes)) | {255}


def test_segmentation_label_files_use_zero_for_unlabelled():
    from harness.data import resolve_root

    root = resolve_root("synthetic-segmentation")
    values = set()
    for p in sorted((root / "annotations" / "training").glob("*.png"))[:50]:
        values |= set(np.unique(np.asarray(Image.open(p))).tolist())
    assert min(values) == 0 and max(values) == len(CLASS_NAMES)
    assert (root / "objectInfo150.txt").read_text().splitlines()[0].split("\t") == ["Idx", "Ratio", "Train", "Val", "Name"]


@pytest.mark.parametrize("name,classes,train,val", [("synthetic-objects", 10, 2000, 500),
                                                    ("synthetic-fine", len(CLASSES), 1200, 480)])
def test_classification_sets_read_by_imagefolder(name, classes, train, val):
    from harness.data import check_dataset, get_index

    assert check_dataset(name) == {"train": train, "val": val}
    index = get_index(name, "train")
    assert len(index.classes) == classes
    assert np.bincount(index.labels).tolist() == [train // classes] * classes


def test_scenes_images_are_a_pretraining_view():
    from harness.data import get_index
    from harness.data.images import ImageListDataset

    index = get_index("synthetic-scenes", "train")
    assert index.labels is None and index.items[0] == "train2017/000000000001.png"
    img, label = ImageListDataset(index)[0]
    assert img.size == (96, 96) and label == -1


def test_generators_write_json_with_coco_keys(tmp_path):
    generate_scenes(tmp_path, 0, train_images=2, val_images=1, image_size=48)
    doc = json.loads((tmp_path / "annotations" / "instances_val2017.json").read_text())
    assert {"images", "annotations", "categories", "info", "licenses"} <= doc.keys()
    assert {a["iscrowd"] for a in doc["annotations"]} == {0}
    assert doc["images"][0]["id"] == 3  # image ids are unique across splits, as in COCO
