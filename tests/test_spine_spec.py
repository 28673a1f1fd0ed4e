"""Study files: scale merging and validation errors that name file, key path and value."""

from __future__ import annotations

import pytest
import yaml

from harness.errors import ConfigError
from harness.plan import make_plan
from harness.spec import load_study
from tests.micro import MICRO, write_micro


def _write(tmp_path, data) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def _variant(**pretrain) -> dict:
    data = yaml.safe_load(yaml.safe_dump(MICRO))
    data["scales"]["tiny"]["pretrain"].update(pretrain)
    return data


def test_the_shipped_study_loads_at_both_scales():
    tiny = load_study("imagenet-fractions")
    assert tiny.scale_name == "tiny" and tiny.scale.model == "vit-tiny-16"
    assert {"none", "supervised", "beit", "splitmask", "dino"} <= set(tiny.scale.pretrain.methods)
    assert tiny.scale.pretrain.fractions == [0.05, 0.1, 1.0]
    assert tiny.scale.pretrain.seeds == [0, 1, 2]
    assert load_study("imagenet-fractions", seeds=2).scale.pretrain.seeds == [0, 1]
    paper = load_study("imagenet-fractions", "paper")
    assert paper.scale.model == "vit-b16" and "splitmask" in paper.scale.pretrain.methods


def test_common_section_merges_under_each_scale(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(MICRO))
    data["common"] = {"pretrain": {"seeds": [3, 4]}, "device": "cuda"}
    study = load_study(_write(tmp_path, data))
    assert study.scale.pretrain.seeds == [3, 4]  # from common
    assert study.scale.device == "cpu"  # the scale wins


def test_unknown_method_names_file_key_and_suggests(tmp_path):
    path = _write(tmp_path, _variant(methods=["none", "supervisd"]))
    with pytest.raises(ConfigError) as e:
        load_study(path)
    msg = str(e.value)
    assert path in msg and "scales.tiny.pretrain.methods[1]" in msg and "'supervisd'" in msg
    assert "did you mean 'supervised'" in msg


def test_unknown_dataset_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'synthetic-objects'"):
        load_study(_write(tmp_path, _variant(datasets=["synthetic-object"])))


def test_bad_fraction_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, _variant(fractions=[0.1, 1.5])))
    assert "scales.tiny.pretrain.fractions" in str(e.value) and "1.5" in str(e.value)


def test_misspelled_key_is_rejected_with_its_path(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, _variant(seedz=[1])))
    assert "scales.tiny.pretrain.seedz" in str(e.value)


def test_unknown_scale_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load_study(_write(tmp_path, MICRO), "tinyy")


def test_unknown_study_name_suggests():
    with pytest.raises(ConfigError, match="did you mean 'imagenet-fractions'"):
        load_study("imagenet-fraction")


def test_unknown_method_parameter_is_a_config_error(tmp_path):
    path = write_micro(tmp_path, method_params={"supervised": {"lr": 1e-3, "label_smothing": 0.2}})
    with pytest.raises(ConfigError, match="pretrain.method_params.supervised.*label_smothing"):
        make_plan(load_study(path))


def test_missing_dataset_root_fails_before_anything_runs(tmp_path):
    data = _variant(datasets=["imagenet"])
    with pytest.raises(Exception, match="HARNESS_DATA_IMAGENET"):
        make_plan(load_study(_write(tmp_path, data)))


def test_cuda_device_without_gpus_is_rejected_naming_the_key(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(MICRO))
    data["scales"]["tiny"]["device"] = "cuda"
    with pytest.raises(ConfigError) as e:
        load_study(_write(tmp_path, data))
    assert "scales.tiny" in str(e.value) and "resources.pretrain.gpus_per_node is 0" in str(e.value)
    data["scales"]["tiny"]["resources"] = {"pretrain": {"gpus_per_node": 1}, "downstream": {"gpus_per_node": 1}}
    assert load_study(_write(tmp_path, data)).scale.device == "cuda"
