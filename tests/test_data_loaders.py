"""Real loaders on tiny on-disk fixtures in the real layouts (ImageFolder, COCO, ADE20k, iNaturalist-2019),
and the errors a user sees when a root is missing or malformed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import check_dataset, get_index, get_manifest
from harness.errors import DataRootError


def write_image(path: Path, size=(20, 16), value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 100, 200)).save(path)


@pytest.fixture
def imagefolder_root(tmp_path, monkeypatch):
    root = tmp_path / "cars"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("audi", "bmw"):
            for i in range(n):
                write_image(root / split / cls / f"{i}.jpg", value=i)
    monkeypatch.setenv("HARNESS_DATA_STANFORD_CARS", str(root))
    return root


def make_coco(root: Path, missing: int = 0) -> None:
    """Two val images with polygon masks (as real COCO has for iscrowd=0) and one crowd annotation."""
    images = [{"id": 42, "file_name": "000000000042.jpg", "width": 20, "height": 16},
              {"id": 7, "file_name": "000000000007.jpg", "width": 20, "height": 16}]
    for split in ("train2017", "val2017"):
        for im in images[missing:]:
            write_image(root / split / im["file_name"])
    anns = [
        {"id": 1, "image_id": 42, "category_id": 18, "iscrowd": 0, "area": 30.0, "bbox": [2, 3, 6, 5],
         "segmentation": [[2, 3, 8, 3, 8, 8, 2, 8]]},
        {"id": 2, "image_id": 42, "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [10, 10, 4, 3],
         "segmentation": [[10, 10, 14, 10, 14, 13, 10, 13]]},
        {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "area": 4.0, "bbox": [0, 0, 2, 2],
         "segmentation": {"size": [16, 20], "counts": [0, 2, 14, 2, 302]}},
    ]
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train2017", "val2017"):
        doc = {"images": images, "annotations": anns, "categories": cats}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


@pytest.fixture
def coco_root(tmp_path, monkeypatch):
    root = tmp_path / "coco"
    make_coco(root)
    monkeypatch.setenv("HARNESS_DATA_COCO", str(root))
    return root


def make_ade(root: Path, with_labels: bool = True) -> None:
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i in range(1, 3):
            write_image(root / "images" / split / f"{prefix}_{i:08d}.jpg")
            if with_labels:
                lbl = np.zeros((16, 20), np.uint8)
                lbl[:8] = 1
                lbl[8:, :10] = 150
                (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(lbl).save(root / "annotations" / split / f"{prefix}_{i:08d}.png")


@pytest.fixture
def inat_root(tmp_path, monkeypatch):
    root = tmp_path / "inat"
    cats = [{"id": 5, "name": "Quercus"}, {"id": 2, "name": "Apis"}, {"id": 9, "name": "Bufo"}]
    for split, ids in (("train", [1, 2, 3, 4]), ("val", [10, 11])):
        images = [{"id": i, "file_name": f"train_val2019/Plants/{i % 3}/{i}.jpg", "width": 20, "height": 16} for i in ids]
        anns = [{"id": 100 + i, "image_id": i, "category_id": cats[i % 3]["id"]} for i in ids]
        for im in images:
            write_image(root / im["file_name"])
        (root / f"{split}2019.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    monkeypatch.setenv("HARNESS_DATA_INAT2019", str(root))
    return root


def test_imagefolder_reader_maps_val_to_test_folder(imagefolder_root):
    (imagefolder_root / "test" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    assert check_dataset("stanford-cars") == {"train": 6, "val": 4}
    val = get_index("stanford-cars", "val")
    assert val.classes == ["audi", "bmw"] and val.labels.tolist() == [0, 0, 1, 1]
    assert val.items[0] == "test/audi/0.jpg"


def test_imagefolder_empty_class_folder_is_one_clear_error(imagefolder_root):
    (imagefolder_root / "train" / "citroen").mkdir()
    with pytest.raises(DataRootError, match=r"class folder .*citroen has no images"):
        get_index("stanford-cars", "train")


def test_missing_and_unconfigured_roots_name_what_was_expected(tmp_path, monkeypatch):
    with pytest.raises(DataRootError, match=r"HARNESS_DATA_IMAGENET.*ImageFolder"):
        check_dataset("imagenet")
    monkeypatch.setenv("HARNESS_DATA_COCO", str(tmp_path / "nowhere"))
    with pytest.raises(DataRootError, match=r"does not exist .*instances_"):
        check_dataset("coco")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HARNESS_DATA_ADE20K", str(tmp_path / "empty"))
    with pytest.raises(DataRootError, match=r"images/training is missing; expected .*ADEChallengeData2016"):
        check_dataset("ade20k")


def test_data_roots_file(tmp_path, monkeypatch, imagefolder_root):
    monkeypatch.delenv("HARNESS_DATA_STANFORD_CARS")
    roots = tmp_path / "roots.yaml"
    roots.write_text(f"stanford-cars: {imagefolder_root}\n")
    monkeypatch.setenv("HARNESS_DATA_ROOTS", str(roots))
    assert check_dataset("stanford-cars")["train"] == 6
    roots.write_text("- not a mapping\n")
    with pytest.raises(DataRootError, match="expected a mapping"):
        check_dataset("stanford-cars")


def test_coco_reader_lists_images_without_labels(coco_root):
    index = get_index("coco", "val")
    assert index.items == ["val2017/000000000007.jpg", "val2017/000000000042.jpg"]  # by image id
    assert index.labels is None and index.classes is None
    m = get_manifest("coco", "train", 0.5, seed=0)
    assert len(m) == 1 and not m.balanced


def test_coco_json_with_missing_images_is_one_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "coco"
    make_coco(root, missing=1)
    monkeypatch.setenv("HARNESS_DATA_COCO", str(root))
    with pytest.raises(DataRootError, match=r"instances_train2017.json references 1 image\(s\) missing .*000000000042"):
        check_dataset("coco")


def test_coco_malformed_json(coco_root):
    (coco_root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DataRootError, match="not valid JSON"):
        get_index("coco", "val")


def test_coco_detection_dataset_on_polygons(coco_root):
    from harness.data import joint_transforms as JT
    from harness.data.coco_detection import CocoDetectionDataset, coco_annotation_file, coco_categories

    cats = coco_categories("coco")
    assert cats.coco_ids == (1, 18) and cats.label(18) == 2 and cats.coco_id(1) == 1
    assert coco_annotation_file("coco", "val") == coco_root / "annotations" / "instances_val2017.json"
    ds = CocoDetectionDataset("coco", "val")
    assert len(ds) == 2 and ds.num_classes == 2
    image, t = ds[1]  # image 42
    assert image.shape == (3, 16, 20) and image.dtype == torch.float32 and image.max() <= 1
    assert t["image_id"] == 42 and t["labels"].tolist() == [2, 1]
    assert t["boxes"].tolist() == [[2, 3, 8, 8], [10, 10, 14, 13]]
    assert t["masks"].shape == (2, 16, 20) and t["masks"].dtype == torch.uint8
    assert t["masks"][0, 5, 5] == 1 and t["masks"][0, 12, 12] == 0 and t["masks"][1, 12, 12] == 1
    _, crowd_only = ds[0]
    assert len(crowd_only["labels"]) == 0 and crowd_only["masks"].shape == (0, 16, 20)

    flipped = CocoDetectionDataset("coco", "val", transform=JT.Compose([JT.Resize((32, 40)), JT.RandomHorizontalFlip(1.0)]))
    image2, t2 = flipped[1]
    assert image2.shape == (3, 32, 40)
    assert t2["boxes"][0].tolist() == [40 - 16, 6, 40 - 4, 16]
    ys, xs = torch.nonzero(t2["masks"][0], as_tuple=True)
    assert xs.min() >= 40 - 17 and xs.max() <= 40 - 4


def test_ade_reader_and_segmentation_dataset(tmp_path, monkeypatch):
    from harness.data import joint_transforms as JT
    from harness.data.segmentation import SegmentationDataset

    root = tmp_path / "ADEChallengeData2016"
    make_ade(root)
    monkeypatch.setenv("HARNESS_DATA_ADE20K", str(root))
    assert check_dataset("ade20k") == {"train": 2, "val": 2}
    ds = SegmentationDataset("ade20k", "val")
    assert ds.num_classes == 150  # no objectInfo150.txt: the catalog's class count
    image, label = ds[0]
    assert image.shape == (3, 16, 20) and label.dtype == torch.int64
    assert label[0, 0] == 0 and label[10, 0] == 149 and label[10, 15] == 255  # reduce_zero_label
    cropped = SegmentationDataset("ade20k", "val", transform=JT.Compose([JT.RandomCrop(24), JT.RandomHorizontalFlip()]))
    image, label = cropped[0]
    assert image.shape == (3, 24, 24) and (label == 255).any()


def test_ade_missing_label_png_is_one_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "ADEChallengeData2016"
    make_ade(root)
    (root / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    monkeypatch.setenv("HARNESS_DATA_ADE20K", str(root))
    with pytest.raises(DataRootError, match=r"1 image\(s\) .* have no label PNG .*ADE_val_00000002.png"):
        get_index("ade20k", "val")


def test_inat_reader(inat_root):
    index = get_index("inat2019", "train")
    assert index.classes == ["Apis", "Quercus", "Bufo"]  # by category id: 2, 5, 9
    assert index.items == [f"train_val2019/Plants/{i % 3}/{i}.jpg" for i in (1, 2, 3, 4)]
    assert index.labels.tolist() == [0, 2, 1, 0]  # images 1..4 -> category ids 2, 9, 5, 2
    assert get_index("inat2019", "val").classes == index.classes


def test_inat_missing_image_is_one_clear_error(inat_root):
    (inat_root / "train_val2019/Plants/1/4.jpg").unlink()
    with pytest.raises(DataRootError, match=r"train2019.json references 1 image\(s\) missing .*Plants/1/4.jpg"):
        get_index("inat2019", "train")


def test_index_cache_is_reused_and_refreshed(imagefolder_root):
    from harness.data.index import cache_path

    first = get_index("stanford-cars", "train")
    path = cache_path("stanford-cars", "train", imagefolder_root)
    assert path.exists()
    write_image(imagefolder_root / "train" / "audi" / "9.jpg")  # deep change: the cached index stays
    assert len(get_index("stanford-cars", "train")) == len(first)
    assert len(get_index("stanford-cars", "train", rebuild=True)) == len(first) + 1
    write_image(imagefolder_root / "train" / "citroen" / "0.jpg")  # new class folder: the stamp changes
    assert get_index("stanford-cars", "train").classes == ["audi", "bmw", "citroen"]


def test_plan_checks_downstream_dataset_roots(tmp_path):
    from harness.plan import make_plan
    from harness.spec import load_study

    study = tmp_path / "s.yaml"
    study.write_text("""
name: s
scales:
  tiny:
    model: vit-tiny-32
    pretrain: {methods: [none], datasets: [synthetic-objects], epochs: [1]}
    downstream:
      - {task: finetune, dataset: stanford-cars}
""")
    with pytest.raises(DataRootError, match="HARNESS_DATA_STANFORD_CARS"):
        make_plan(load_study(study))


def test_joint_resize_keeps_label_values_and_box_geometry():
    from harness.data import joint_transforms as JT

    label = torch.full((16, 20), 255, dtype=torch.int64)
    label[4:12, 5:15] = 3
    image, out = JT.Resize(8)(torch.rand(3, 16, 20), label)
    assert image.shape == (3, 8, 10) and out.shape == (8, 10)
    assert set(out.unique().tolist()) == {3, 255} and (out == 3).sum() == 4 * 5
    target = {"boxes": torch.tensor([[2.0, 4.0, 10.0, 12.0]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 16, 20, dtype=torch.uint8), "area": torch.tensor([64.0])}
    _, t = JT.Resize((32, 40))(torch.rand(3, 16, 20), target)
    assert t["boxes"].tolist() == [[4.0, 8.0, 20.0, 24.0]] and t["masks"].shape == (1, 32, 40)
    assert t["area"].item() == 256.0
