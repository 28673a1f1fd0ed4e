"""The paper's study files parse into the spec's models at every scale (registry names are checked against the
names the merged harness provides), and the grid filters they use (method_datasets, downstream methods /
pretrain_datasets, updates_reference) shape the plan as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.spec import Scale, StudyFile, _check_subsets, deep_merge

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
PAPER_STUDIES = {"imagenet-fractions", "coco", "ade20k", "small-datasets", "small-datasets-mask75", "long-schedule"}
# names that exist once the methods, data and downstream branches are merged
METHODS = {"none", "supervised", "beit", "splitmask", "dino", "mae"}
DATASETS = {"synthetic-objects", "synthetic-scenes", "synthetic-segmentation", "synthetic-fine", "imagenet", "coco",
            "ade20k", "stanford-cars", "domainnet-clipart", "domainnet-sketch", "domainnet-painting", "inat2019"}
TASKS = {"finetune", "linear_probe", "knn", "detection", "segmentation"}
SYNTHETIC = {d for d in DATASETS if d.startswith("synthetic-")}


def _scales(path: Path) -> dict[str, Scale]:
    raw = StudyFile.model_validate(yaml.safe_load(path.read_text()))
    return {name: Scale.model_validate(deep_merge(raw.common, s)) for name, s in raw.scales.items()}


def test_every_paper_study_is_there():
    names = {yaml.safe_load(p.read_text())["name"] for p in STUDIES}
    assert PAPER_STUDIES <= names


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_scales_parse_and_name_known_things(path: Path):
    scales = _scales(path)
    assert {"tiny", "paper"} <= set(scales)
    for name, s in scales.items():
        _check_subsets(s, str(path), lambda loc: str(loc))
        assert set(s.pretrain.methods) <= METHODS, name
        assert set(s.pretrain.datasets) <= DATASETS, name
        assert {d.task for d in s.downstream} <= TASKS, name
        assert {d.dataset for d in s.downstream} <= DATASETS, name
        if name.startswith("tiny"):
            assert s.model in ("vit-tiny-16", "vit-tiny-32", "vit-tiny-64") and s.device == "cpu"
            used = set(s.pretrain.datasets) | {d.dataset for d in s.downstream} | {s.pretrain.updates_reference or "synthetic-objects"}
            assert used <= SYNTHETIC, f"tiny scale of {path.name} uses real data: {used - SYNTHETIC}"
        else:
            assert s.model in ("vit-s16", "vit-b16") and s.device == "cuda"
            assert s.resources.pretrain.gpus_per_node > 0 and s.resources.downstream.gpus_per_node > 0
            assert not set(s.pretrain.datasets) & SYNTHETIC


def test_coco_random_init_gets_its_own_long_detection_schedule():
    s = _scales(Path("studies/coco.yaml"))["paper"]
    by_methods = {tuple(d.methods): d.params["epochs"] for d in s.downstream}
    assert by_methods[("none",)] > by_methods[("supervised", "beit", "splitmask", "dino")]
    assert s.pretrain.method_datasets == {"supervised": ["imagenet"]}
    assert _scales(Path("studies/coco.yaml"))["paper-vits"].model == "vit-s16"


def test_subset_filters_must_name_grid_members():
    s = _scales(Path("studies/coco.yaml"))["tiny"]
    bad = s.model_copy(update={"pretrain": s.pretrain.model_copy(update={"method_datasets": {"supervised": ["coco"]}})})
    with pytest.raises(ConfigError, match="'coco' is not in the grid's datasets"):
        _check_subsets(bad, "coco.yaml", lambda loc: ".".join(map(str, loc)))


def _write_study(tmp_path: Path, pretrain: dict, downstream: list[dict]) -> Path:
    doc = {"name": "filters", "scales": {"tiny": {"model": "vit-tiny-32", "device": "cpu", "pretrain": pretrain,
                                                    "downstream": downstream}}}
    path = tmp_path / "filters.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_plan_applies_downstream_method_filter_and_updates_reference(tmp_path):
    from harness.plan import make_plan
    from harness.spec import load_study

    grid = {"methods": ["none", "supervised"], "datasets": ["synthetic-objects"], "fractions": [0.5], "epochs": [2]}
    downstream = [{"task": "finetune", "dataset": "synthetic-objects", "methods": ["supervised"], "params": {"epochs": 1}},
                  {"task": "finetune", "dataset": "synthetic-objects", "methods": ["none"], "params": {"epochs": 3}}]
    plan = make_plan(load_study(_write_study(tmp_path, grid, downstream)))
    epochs = {j.coords["method"]: j.config["params"]["epochs"] for j in plan.downstream}
    assert len(plan.downstream) == 2 and epochs == {"supervised": 1, "none": 3}



def test_updates_reference_measures_epochs_on_another_set(tmp_path, monkeypatch):
    from harness.engine import updates_per_epoch
    from harness.plan import make_plan
    from harness.spec import load_study

    reference = tmp_path / "imagenet"  # a 20-image stand-in: only its size matters to the plan
    for i in range(20):
        (reference / "train" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (reference / "train" / f"c{i % 2}" / f"{i}.png").write_bytes(b"")
    monkeypatch.setenv("HARNESS_DATA_IMAGENET", str(reference))
    grid = {"methods": ["supervised"], "datasets": ["synthetic-objects"], "fractions": [0.5], "epochs": [3],
            "schedule": "fixed-updates"}
    own = make_plan(load_study(_write_study(tmp_path, grid, [])))
    referenced = make_plan(load_study(_write_study(tmp_path, {**grid, "updates_reference": "imagenet"}, [])))
    batch = own.pretrain[0].config["params"]["batch_size"]
    assert referenced.pretrain[0].config["schedule"]["total_updates"] == 3 * updates_per_epoch(20, batch)
    assert own.pretrain[0].config["schedule"]["total_updates"] != referenced.pretrain[0].config["schedule"]["total_updates"]
    assert own.pretrain[0].id != referenced.pretrain[0].id
