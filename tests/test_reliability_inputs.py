"""Bad study files and bad command lines: each gives one clear error naming what is wrong, before any job runs."""

from __future__ import annotations

import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError, DataRootError, HarnessError
from harness.plan import make_plan
from harness.spec import load_study, parse_seeds
from harness.yamlfile import loads
from tests.micro import MICRO, write_micro


def _study(tmp_path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return str(path)


def _micro(**changes) -> dict:
    data = yaml.safe_load(yaml.safe_dump(MICRO))
    data.update(changes)
    return data


# --- YAML -------------------------------------------------------------------------------------------------------

def test_duplicate_key_is_rejected_with_its_line(tmp_path):
    text = yaml.safe_dump(MICRO, sort_keys=False).replace("description: spine test\n",
                                                          "description: spine test\nname: other\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'name' \(first at line 1\)"):
        load_study(_study(tmp_path, text))


@pytest.mark.parametrize("text,value", [("1e9", 1e9), ("1.0e9", 1e9), ("1e-3", 1e-3), ("-2.5E+3", -2500.0),
                                        (".5", 0.5), ("3", 3), ("0.25", 0.25)])
def test_exponent_floats_are_read_as_floats(text, value):
    parsed = loads(f"lr: {text}")["lr"]
    assert parsed == value and type(parsed) is type(value)


def test_exponent_learning_rate_reaches_the_job_as_a_number(tmp_path):
    text = yaml.safe_dump(MICRO, sort_keys=False).replace("batch_size: 32", "batch_size: 32\n          lr: 1e-3")
    assert "lr: 1e-3" in text
    plan = make_plan(load_study(_study(tmp_path, text)))
    sup = next(j for j in plan.pretrain if j.coords["method"] == "supervised")
    assert sup.config["params"]["lr"] == 0.001


def test_alias_bomb_is_rejected_before_it_expands(tmp_path):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    text = "\n".join(lines) + "\nname: *a9\nscales: {tiny: {}}\n"
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        load_study(_study(tmp_path, text))


def test_merge_keys_still_override():
    assert loads("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")["other"] == {"x": 1, "y": 3}


# --- names that become paths or shell words ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "", ".", "..", "a\nb", "bad name", "x;rm -rf ~", "$(id)"])
def test_study_name_must_be_a_slug(tmp_path, name):
    with pytest.raises(ConfigError, match="must be a slug"):
        load_study(_study(tmp_path, yaml.safe_dump(_micro(name=name))))


def test_dataset_name_must_be_a_slug(tmp_path):
    data = _micro()
    data["scales"]["tiny"]["downstream"][0]["dataset"] = "../imagenet"
    with pytest.raises(ConfigError, match=r"downstream\[0\]\.dataset: must be a slug"):
        load_study(_study(tmp_path, yaml.safe_dump(data)))


def test_report_reads_the_validated_name(tmp_path, capsys):
    path = _study(tmp_path, yaml.safe_dump(_micro(name="../../escape")))
    assert main(["report", path, "--results", str(tmp_path / "r")]) == 2
    assert "must be a slug" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists()


# --- typed values -----------------------------------------------------------------------------------------------

def test_negative_seed_is_rejected(tmp_path):
    data = _micro()
    data["scales"]["tiny"]["pretrain"]["seeds"] = [0, -1]
    with pytest.raises(ConfigError, match=r"pretrain\.seeds\[1\]: Input should be greater than or equal to 0"):
        load_study(_study(tmp_path, yaml.safe_dump(data)))


@pytest.mark.parametrize("params,match", [
    ({"epochs": 0}, "epochs: must be positive"),
    ({"epochs": -2}, "epochs: must be positive"),
    ({"epochs": 1.5}, "epochs: expected an integer"),
    ({"epochs": "3"}, "epochs: expected an integer"),
    ({"batch_size": True}, "batch_size: expected an integer"),
    ({"lr": "1e-3x"}, "lr: expected a number"),
    ({"lr": float("nan")}, "lr: must be a finite number"),
    ({"weight_decay": -0.1}, "weight_decay: must not be negative"),
])
def test_task_parameters_are_checked_at_plan_time(tmp_path, params, match):
    data = _micro()
    data["scales"]["tiny"]["downstream"][0]["params"] = params
    with pytest.raises(ConfigError, match=r"downstream\[0\]\.params: .*" + match):
        make_plan(load_study(_study(tmp_path, yaml.safe_dump(data))))


def test_method_parameters_are_checked_at_plan_time(tmp_path):
    path = write_micro(tmp_path, method_params={"supervised": {"batch_size": 0}})
    with pytest.raises(ConfigError, match=r"pretrain\.method_params\.supervised: batch_size: must be positive"):
        make_plan(load_study(path))


# --- command line -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,match", [("abc", "expected a count N"), ("0", "at least 1"), ("1,x", "expected a count"),
                                        ("-1,2", "non-negative"), ("-3", "at least 1")])
def test_bad_seeds_option(text, match):
    with pytest.raises(HarnessError, match=match):
        parse_seeds(text)


def test_seeds_zero_on_the_command_line_blames_the_option(tmp_path, capsys):
    assert main(["plan", str(write_micro(tmp_path)), "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert "--seeds 0" in err and "scales.tiny" not in err


def test_seeds_abc_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["plan", str(write_micro(tmp_path)), "--seeds", "abc"]) == 2
    assert capsys.readouterr().err.startswith("error: --seeds 'abc'")


def test_max_parallel_zero_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", str(write_micro(tmp_path)), "--max-parallel", "0"])
    assert "--max-parallel: must be at least 1" in capsys.readouterr().err


def test_launch_refuses_max_parallel_zero(tmp_path):
    from harness.launch import launch

    with pytest.raises(HarnessError, match="--max-parallel must be at least 1"):
        launch(make_plan(load_study(write_micro(tmp_path))), executor="local", max_parallel=0)


@pytest.mark.parametrize("executor,flag", [("slurm", "--max-parallel"), ("debug", "--threads")])
def test_options_the_executor_ignores_are_an_error(tmp_path, capsys, executor, flag):
    assert main(["run", str(write_micro(tmp_path)), "--executor", executor, flag, "2", "--dry-run"]) == 2
    assert f"{flag} applies to the local executor only" in capsys.readouterr().err


def test_job_with_a_missing_spec_file(tmp_path, capsys):
    assert main(["job", str(tmp_path / "missing" / "spec.json")]) == 2
    assert capsys.readouterr().err.strip() == f"error: job spec not found: {tmp_path / 'missing' / 'spec.json'}"


def test_job_with_a_spec_that_is_not_one(tmp_path, capsys):
    (tmp_path / "spec.json").write_text('{"job": 1}')
    assert main(["job", str(tmp_path / "spec.json")]) == 2
    assert "not a job spec" in capsys.readouterr().err


def test_data_root_that_is_a_file_is_named_as_a_file(tmp_path, monkeypatch):
    from harness.data.roots import require_root

    root = tmp_path / "imagenet"
    root.write_text("not a folder")
    monkeypatch.setenv("HARNESS_DATA_IMAGENET", str(root))
    with pytest.raises(DataRootError, match=f"root {root} is a file, not a folder"):
        require_root("imagenet", "train/<class>/*.JPEG")
