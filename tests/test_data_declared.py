"""Datasets declared in YAML: a user's own ImageFolder runs a whole study without code; errors name the file,
the key, the value and what is on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from harness.data import DATASETS, get_index
from harness.errors import ConfigError, DataRootError
from harness.spec import load_study
from tests.micro import MICRO

REPO = Path(__file__).resolve().parents[1]


def make_imagefolder(root: Path, splits=("train", "test"), classes=("daisy", "tulip"), per_class=(24, 8)) -> Path:
    rng = np.random.default_rng(0)
    for split, n in zip(splits, per_class):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (40, 40, 3), dtype=np.uint8)
                pixels[..., c] += 150  # a class is a colour: learnable in a few updates
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def user_study(folder: Path, datasets: dict, in_file: bool = True) -> Path:
    study = yaml.safe_load(yaml.safe_dump(MICRO))
    study["name"] = "flowers"
    tiny = study["scales"]["tiny"]
    tiny["pretrain"].update(datasets=["my-flowers"], fractions=[0.5])
    tiny["downstream"] = [{"task": "finetune", "dataset": "my-flowers", "params": {"epochs": 1, "batch_size": 16}}]
    if in_file:
        study["datasets"] = datasets
    else:
        (folder / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    path = folder / "flowers.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


FLOWERS = {"my-flowers": {"kind": "classification", "layout": "ImageFolder", "root": "data/flowers", "alias": "my_flowers",
                          "splits": {"train": "train", "val": "test"}}}


@pytest.mark.slow
def test_a_users_imagefolder_runs_a_whole_study_declared_in_yaml_alone(tmp_path):
    make_imagefolder(tmp_path / "data" / "flowers")
    path = user_study(tmp_path, FLOWERS)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_THREADS": "1"}
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path), "--executor", "local",
                          "--results", str(results)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = sorted(p for p in (results / "flowers").iterdir() if (p / "metrics.json").exists())
    assert len(jobs) == 4  # random init and supervised, each pre-trained (or not) and fine-tuned
    assert sum(p.name.startswith("finetune.my_flowers-") for p in jobs) == 2
    rows = [m for p in jobs for m in json.loads((p / "metrics.json").read_text())["metrics"] if m["name"] == "top1"]
    assert len(rows) == 2 and all(0 <= r["value"] <= 100 for r in rows)
    spec = json.loads((jobs[0] / "spec.json").read_text())
    assert spec["datasets"]["my-flowers"]["declaration"]["root"] == str(tmp_path / "data" / "flowers")


def test_a_datasets_yaml_beside_the_study_declares_too_and_the_split_folders_map(tmp_path):
    make_imagefolder(tmp_path / "data" / "flowers", per_class=(4, 2))
    study = load_study(user_study(tmp_path, FLOWERS, in_file=False))
    assert "my-flowers" in study.datasets and DATASETS.get("my-flowers").kind == "classification"
    val = get_index("my-flowers", "val")
    assert len(val) == 4 and val.items[0].startswith("test/") and val.classes == ["daisy", "tulip"]


def test_declared_classes_set_the_label_order_and_must_match_the_folders(tmp_path):
    make_imagefolder(tmp_path / "data" / "flowers", per_class=(2, 2))
    decl = {"my-flowers": {**FLOWERS["my-flowers"], "classes": ["tulip", "daisy"]}}
    load_study(user_study(tmp_path, decl))
    assert get_index("my-flowers", "train").classes == ["tulip", "daisy"]
    decl["my-flowers"]["classes"] = ["tulip", "rose"]
    load_study(user_study(tmp_path, decl))
    with pytest.raises(DataRootError, match=r"flowers.yaml: datasets.my-flowers.classes: .*missing folders: rose; "
                                            r"undeclared folders: daisy"):
        get_index("my-flowers", "train")


def test_a_bad_key_names_the_file_the_key_and_the_value(tmp_path):
    bad = {"my-flowers": {**FLOWERS["my-flowers"], "layout": "imagefolders"}}
    with pytest.raises(ConfigError, match=r"flowers.yaml: datasets.my-flowers.layout: .*unknown layout.*'imagefolders'"):
        load_study(user_study(tmp_path, bad))
    with pytest.raises(ConfigError, match=r"datasets.my-flowers.kind: .*"):
        load_study(user_study(tmp_path, {"my-flowers": {"layout": "coco", "root": "x"}}))


def test_a_missing_root_or_split_says_what_is_on_disk(tmp_path, monkeypatch):
    (tmp_path / "data" / "flower").mkdir(parents=True)
    load_study(user_study(tmp_path, FLOWERS))  # loading checks names; the root is looked at when indexing
    with pytest.raises(DataRootError, match=r"flowers.yaml: datasets.my-flowers.root: root .*data/flowers does not "
                                            r"exist .*data holds: flower/"):
        get_index("my-flowers", "train")
    make_imagefolder(tmp_path / "data" / "flowers", splits=("train", "validation"), per_class=(1, 1))
    with pytest.raises(DataRootError, match=r"flowers/test is missing; .*flowers holds: train/, validation/"):
        get_index("my-flowers", "val")
    monkeypatch.delenv("FLOWERS_ROOT", raising=False)
    load_study(user_study(tmp_path, {"my-flowers": {**FLOWERS["my-flowers"], "root": "$FLOWERS_ROOT"}}))
    with pytest.raises(DataRootError, match=r"datasets.my-flowers.root: environment variable FLOWERS_ROOT is not set"):
        get_index("my-flowers", "train")


def test_a_declaration_cannot_shadow_a_built_in_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets.imagenet: 'imagenet' is a built-in dataset"):
        load_study(user_study(tmp_path, {"imagenet": {"kind": "classification", "layout": "imagefolder", "root": "x"}}))
