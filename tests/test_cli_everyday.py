"""The CLI a researcher uses between submitting and reporting: --set, --version, --help, status progress,
logs, cancel, and failures shown with their exception's last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import results as R
from harness.cli import _last_line, main
from harness.curves import HISTORY, progress, progress_text
from harness.errors import ConfigError
from harness.launch.cancel import DRIVERS, cancel
from harness.plan import make_plan
from harness.spec import load_study
from tests.micro import write_micro


def test_set_overrides_any_key_and_is_validated_like_the_file(tmp_path):
    path = write_micro(tmp_path)
    study = load_study(path, sets=["pretrain.epochs=[5, 7]", "downstream.0.params.epochs=2", "device=auto"])
    assert study.scale.pretrain.epochs == [5, 7] and study.scale.downstream[0].params["epochs"] == 2
    with pytest.raises(ConfigError, match=r"\(--set pretrain.epochs=\[0\]\): pretrain.epochs: .*positive"):
        load_study(path, sets=["pretrain.epochs=[0]"])
    with pytest.raises(ConfigError, match=r"pretrain.epoch: Extra inputs are not permitted"):
        load_study(path, sets=["pretrain.epoch=[3]"])
    with pytest.raises(ConfigError, match=r"--set: downstream.3.task: downstream\[3\] does not exist"):
        load_study(path, sets=["downstream.3.task=knn"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_study(path, sets=["pretrain.epochs"])


def test_version_and_help_show_defaults_and_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("harness ")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "(default: 2)" in out and "example" in out and "harness run imagenet-fractions" in out


def _fake_running_job(study_dir: Path, job_id: str, pid: int, steps: list[int], total: int) -> Path:
    d = study_dir / job_id
    d.mkdir(parents=True)
    R.atomic_write_json(d / R.SPEC, {"job_id": job_id})
    R.atomic_write_json(d / R.SUBMITTED, {"executor": "local", "pid": pid, "process": R.process_identity(pid)})
    now = time.time()
    with open(d / HISTORY, "w") as f:
        for i, step in enumerate(steps):  # one update a second, the last row just now
            f.write(json.dumps({"kind": "train", "step": step, "total": total, "loss": 2.5 - 0.1 * i,
                                "time": now - (steps[-1] - step)}) + "\n")
    return d


def test_progress_of_a_running_job_comes_from_its_history(tmp_path):
    d = _fake_running_job(tmp_path, "pre-x", os.getpid(), [10, 20, 30], total=130)
    p = progress(d)
    assert p["step"] == 30 and p["total"] == 130 and p["loss"] == pytest.approx(2.3)
    assert p["eta_s"] == pytest.approx(100, abs=2)  # 100 updates left at one a second
    assert progress_text(d).startswith("update 30/130, loss 2.3, ETA 1m")
    # after a resume the rate comes from the current run only
    with open(d / HISTORY, "a") as f:
        f.write(json.dumps({"kind": "train", "step": 20, "total": 130, "loss": 1.0, "time": time.time()}) + "\n")
    assert progress(d)["eta_s"] is None and progress(d)["step"] == 20


def test_status_shows_update_loss_and_eta_of_a_running_job(tmp_path, capsys):
    path = write_micro(tmp_path, methods=["supervised"], fractions=[0.1])
    plan = make_plan(load_study(path))
    study_dir = tmp_path / "results" / "micro"
    pre = plan.pretrain[0]
    _fake_running_job(study_dir, pre.id, os.getpid(), [5, 10], total=20)
    assert main(["status", str(path), "--results", str(tmp_path / "results")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if pre.id in x)
    assert "running" in line and "update 10/20, loss 2.4, ETA 0m" in line


def test_a_failed_jobs_line_carries_the_exceptions_last_line():
    trace = "Traceback (most recent call last):\n  File 'x.py', line 1\nFloatingPointError: loss is nan at update 3\n"
    assert _last_line(trace) == "FloatingPointError: loss is nan at update 3"


def test_logs_prints_a_jobs_log_plainly_or_as_json_and_every_jobs_newest_line(tmp_path, capsys):
    path = write_micro(tmp_path)
    study_dir = tmp_path / "results" / "micro"
    for job, msg in (("pre-a-1", "first"), ("pre-b-2", "second")):
        (study_dir / job).mkdir(parents=True)
        R.atomic_write_json(study_dir / job / R.SPEC, {})
        (study_dir / job / R.LOG).write_text(json.dumps({"time": "t", "level": "INFO", "logger": "harness.job",
                                                         "message": msg}) + "\n")
    args = ["logs", str(path)]
    opts = ["--results", str(tmp_path / "results")]
    assert main(args + opts) == 0
    out = capsys.readouterr().out
    assert "pre-a-1  t INFO harness.job: first" in out and "pre-b-2" in out
    assert main(args + ["b-2"] + opts) == 0 and capsys.readouterr().out.strip() == "t INFO harness.job: second"
    assert main(args + ["b-2", "--json"] + opts) == 0 and json.loads(capsys.readouterr().out)["message"] == "second"
    assert main(args + ["pre-"] + opts) == 2 and "several jobs" in capsys.readouterr().err
    (study_dir / "pre-b-2" / R.METRICS).write_text("{}")  # -f stops once the job has ended
    assert main(args + ["b-2", "-f"] + opts) == 0 and "second" in capsys.readouterr().out


def test_cancel_stops_the_drivers_and_the_running_local_jobs_of_a_stage(tmp_path):
    study_dir = tmp_path / "micro"
    sleepers = {name: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                for name in ("driver", "pre-a-1", "finetune.x-a-1")}
    try:
        for job in ("pre-a-1", "finetune.x-a-1"):
            (study_dir / job).mkdir(parents=True)
            R.atomic_write_json(study_dir / job / R.SUBMITTED, {"executor": "local", "pid": sleepers[job].pid})
        R.atomic_write_json(study_dir / DRIVERS / "1.json", {"pid": sleepers["driver"].pid})
        assert cancel(study_dir, stage="downstream") == [f"finetune.x-a-1: pid {sleepers['finetune.x-a-1'].pid}"]
        assert sleepers["finetune.x-a-1"].wait(10) is not None
        assert sleepers["pre-a-1"].poll() is None and sleepers["driver"].poll() is None
        stopped = cancel(study_dir)
        assert stopped == [f"driver pid {sleepers['driver'].pid}", f"pre-a-1: pid {sleepers['pre-a-1'].pid}"]
        assert all(p.wait(10) is not None for p in sleepers.values())
        assert cancel(study_dir) == []
    finally:
        for p in sleepers.values():
            p.kill()


def test_plan_without_data_roots_prints_the_grid_its_estimate_and_every_missing_root(tmp_path, capsys):
    import yaml

    path = write_micro(tmp_path, datasets=["lab-photos"])
    study = yaml.safe_load(path.read_text())
    study["datasets"] = {
        "lab-photos": {"kind": "classification", "layout": "imagefolder", "root": "nowhere/photos",
                       "images": {"train": 5000, "val": 1000}},
        "lab-scans": {"kind": "classification", "layout": "imagefolder", "root": "$LAB_SCANS_UNSET",
                      "images": {"train": 800, "val": 200}},
    }
    study["scales"]["tiny"]["downstream"][0]["dataset"] = "lab-scans"
    path.write_text(yaml.safe_dump(study))
    assert main(["plan", str(path), "--results", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out
    assert "3 pre-training + 3 downstream jobs" in out and "compute:" in out
    assert "pre-supervised-lab-photos-f0.10-e3-s0-" in out and "finetune.lab-scans-none-s0-" in out
    assert "2 dataset(s) not found here" in out
    assert "lab-photos: " in out and "nowhere/photos does not exist" in out
    assert "lab-scans: " in out and "LAB_SCANS_UNSET is not set" in out
    assert not any(tmp_path.glob("**/manifests/*lab-photos*"))
