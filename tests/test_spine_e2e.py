"""End to end on the micro study: debug and local executors, a second run that does nothing, a failed job that
does not stop the others, and a run killed mid-training that resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import results as R
from harness.collect import collect
from harness.launch import launch
from harness.launch.state import job_statuses
from harness.plan import make_plan
from harness.results import JobState
from harness.spec import load_study
from tests.micro import write_micro

pytestmark = pytest.mark.slow


def _metric_rows(study_dir: Path) -> dict[str, list]:
    return {d.name: R.read_json(d / R.METRICS)["metrics"] for d in R.iter_job_dirs(study_dir)}


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_micro_study_runs_collects_and_reports(tmp_path, executor, monkeypatch):
    monkeypatch.setenv("HARNESS_THREADS", "1")
    path = write_micro(tmp_path)
    study = yaml.safe_load(path.read_text())  # downstream jobs ask for a GPU (there is none: device stays cpu)
    study["scales"]["tiny"]["resources"] = {"downstream": {"gpus_per_node": 1}}
    path.write_text(yaml.safe_dump(study))
    plan = make_plan(load_study(path))
    root = tmp_path / "results"
    report = launch(plan, executor=executor, results_root=root, max_parallel=2)
    assert report.failed == [] and len(report.submitted) == len(plan.jobs)
    study_dir = root / "micro"
    for job in plan.jobs:
        doc = R.read_json(study_dir / job.id / R.METRICS)
        assert doc is not None and doc["job_id"] == job.id
        for name in (R.SPEC, R.ENV, R.LOG):
            assert (study_dir / job.id / name).exists()
    env = R.read_json(study_dir / plan.jobs[0].id / R.ENV)
    assert env["packages"]["torch"] and "commit" in env["git"]
    recorded = R.read_json(study_dir / plan.jobs[0].id / R.METRICS)["provenance"]
    assert recorded == {k: env[k] for k in ("git", "host", "python", "packages")}  # a report reads no env.json
    if executor == "local":  # submitit shows a job the GPUs it asked for, and hides them from the others
        visible = {j.stage: R.read_json(study_dir / j.id / R.ENV)["cuda_visible_devices"] for j in plan.jobs}
        assert visible == {"pretrain": "", "downstream": "0"}
    frame = collect(study_dir)
    top1 = frame[frame["metric"] == "top1"]
    assert len(top1) == 3 and top1["value"].between(0, 100).all()
    assert set(top1["method"]) == {"none", "supervised"}
    assert top1["python"].notna().all() and top1["packages"].str.contains("torch").all()
    assert (study_dir / "collected.csv").exists() and (study_dir / "collected.parquet").exists()

    from analysis.report import write_report

    written = write_report(frame, study_dir, what=("tables", "figures"))
    assert any(p.suffix == ".png" for p in written) and any(p.suffix == ".md" for p in written)

    # a second run does no work at all
    again = launch(plan, executor=executor, results_root=root)
    assert again.submitted == [] and len(again.skipped_done) == len(plan.jobs)


def test_failed_job_is_recorded_and_others_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_THREADS", "1")
    # a learning rate that turns the loss into NaN fails the 0.2-fraction job at run time
    path = write_micro(tmp_path, fractions=[0.1], method_params={"supervised": {"batch_size": 32, "lr": 1e30}})
    plan = make_plan(load_study(path))
    root = tmp_path / "results"
    report = launch(plan, executor="debug", results_root=root)
    sup = next(j for j in plan.pretrain if j.coords["method"] == "supervised")
    down = next(j for j in plan.downstream if j.upstream == sup.id)
    statuses = job_statuses(plan.jobs, root / "micro")
    assert statuses[sup.id].state == JobState.FAILED
    assert (root / "micro" / sup.id / R.TRACEBACK).exists()
    assert statuses[down.id].state == JobState.DEPENDENCY_FAILED
    others = [j for j in plan.jobs if j.id not in (sup.id, down.id)]
    assert all(statuses[j.id].state == JobState.DONE for j in others)
    assert set(report.failed) == {sup.id, down.id}
    # not retried without --retry-failed
    again = launch(plan, executor="debug", results_root=root)
    assert again.submitted == [] and sup.id in again.skipped_failed


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    path = write_micro(tmp_path, methods=["supervised"], fractions=[0.1], epochs=[12])
    env = {**os.environ, "HARNESS_THREADS": "1", "HARNESS_CHECKPOINT_UPDATES": "2"}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(path), "--executor", "debug"]
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    plan = make_plan(load_study(path))
    pre = plan.pretrain[0]
    proc = subprocess.Popen(cmd + ["--results", str(killed_root)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed_root / "micro" / pre.id / R.CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), "no checkpoint was written"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_root / "micro" / pre.id / R.METRICS).exists()
    assert job_statuses(plan.jobs, killed_root / "micro")[pre.id].state == JobState.PENDING

    subprocess.run(cmd + ["--results", str(killed_root)], env=env, check=True, capture_output=True)
    log = (killed_root / "micro" / pre.id / R.LOG).read_text()
    assert "resumed from" in log
    subprocess.run(cmd + ["--results", str(clean_root)], env=env, check=True, capture_output=True)
    assert _metric_rows(killed_root / "micro") == _metric_rows(clean_root / "micro")
    # a done job keeps its latest checkpoint; the fallback written before it (every 2 updates here) is deleted
    for root in (killed_root, clean_root):
        assert (root / "micro" / pre.id / R.CHECKPOINT).exists()
        assert not list((root / "micro").glob("*/checkpoint.prev.pt"))


def test_local_driver_waits_for_an_upstream_run_by_another_driver(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("HARNESS_THREADS", "1")
    plan = make_plan(load_study(write_micro(tmp_path, methods=["supervised"], fractions=[0.1])))
    root = tmp_path / "results"
    pre, down = plan.pretrain[0], plan.downstream[0]
    assert launch(plan, executor="debug", results_root=root).failed == []
    pre_dir, down_dir = root / "micro" / pre.id, root / "micro" / down.id
    # the pre-training job now looks "running in another driver" (a live pid, no metrics yet) ...
    metrics = (pre_dir / R.METRICS).read_text()
    (pre_dir / R.METRICS).unlink()
    R.atomic_write_json(pre_dir / R.SUBMITTED, {"executor": "local", "driver": R.process_identity()})
    (down_dir / R.METRICS).unlink()
    # ... and finishes a moment later
    threading.Timer(1.5, lambda: (pre_dir / R.METRICS).write_text(metrics)).start()
    report = launch(plan, executor="local", results_root=root)
    assert report.skipped_running == [pre.id] and report.submitted == [down.id]
    assert report.outcome == {down.id: "done"} and (down_dir / R.METRICS).exists()


def test_collect_keeps_only_the_jobs_of_the_current_plan(tmp_path, monkeypatch):
    from harness.collect import collect_frame

    monkeypatch.setenv("HARNESS_THREADS", "1")
    root = tmp_path / "results"
    old = make_plan(load_study(write_micro(tmp_path, methods=["none"], method_params={})))
    assert launch(old, executor="debug", results_root=root).failed == []
    # the study changes (another fine-tuning schedule): the old job folders stay on disk ...
    path = write_micro(tmp_path, methods=["none"], method_params={})
    assert "epochs: 1" in path.read_text()
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 2"))
    new = make_plan(load_study(path))
    assert launch(new, executor="debug", results_root=root).failed == []
    everything = collect_frame(root / "micro")
    current = collect_frame(root / "micro", only={j.id for j in new.jobs})
    # ... and do not mix into the current study's rows
    downstream_ids = {j.id for j in old.jobs + new.jobs if j.stage == "downstream"}
    assert set(everything["job_id"]) == downstream_ids and len(downstream_ids) == 2
    assert set(current["job_id"]) == {j.id for j in new.jobs if j.stage == "downstream"}  # `none` has no metric rows
    assert {j.id for j in old.jobs if j.stage == "downstream"}.isdisjoint(current["job_id"])
