"""Against a real SLURM cluster (``make slurm-up``; ``.ci/run`` starts one): submission with dependencies,
status, collect, a failing pre-training job, preemption + resume, and a 2-process gloo job.

Every test uses its own results folder (tmp_path), so every submission gets a fresh submitit folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import results as R
from harness.cli import main
from harness.launch import launch
from harness.launch.state import job_statuses, sacct_states
from harness.plan import make_plan
from harness.results import JobState
from harness.spec import load_study

REPO = Path(__file__).resolve().parents[1]
FINAL = (JobState.DONE, JobState.FAILED, JobState.DEPENDENCY_FAILED)


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "up" in out.stdout


CLUSTER_UP = _cluster_up()
REQUIRED = os.environ.get("HARNESS_REQUIRE_SLURM") == "1"  # set by .ci/run: there a missing cluster fails

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(not CLUSTER_UP and not REQUIRED, reason="no SLURM cluster here (sinfo missing or no "
                                                               "partition up); start the single-node one with "
                                                               "`make slurm-up`"),
]


@pytest.fixture(autouse=True)
def _cluster_required():
    if not CLUSTER_UP:
        pytest.fail("HARNESS_REQUIRE_SLURM=1 but no SLURM cluster answers `sinfo` (see `make slurm-status`)")


def write_study(path: Path, name: str, *, fractions=(0.1,), epochs=(1,), method="supervised", method_params=None,
                downstream=True, downstream_params=None, resources=None) -> Path:
    scale = {
        "model": "vit-tiny-32", "device": "cpu",
        "pretrain": {"methods": [method], "datasets": ["synthetic-objects"], "fractions": list(fractions),
                     "epochs": list(epochs), "schedule": "fixed-epochs"},
        # timeout_min >= 5: submitit's USR2 comes 90 s (+ up to 60 s) before the limit
        "resources": resources or {"pretrain": {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 10},
                                   "downstream": {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 10}},
    }
    scale["pretrain"]["method_params"] = {method: {"batch_size": 32, **(method_params or {})}} if method != "none" else {}
    if downstream:
        scale["downstream"] = [{"task": "finetune", "dataset": "synthetic-objects",
                                "params": {"epochs": 1, "batch_size": 128, **(downstream_params or {})}}]
    path.write_text(yaml.safe_dump({"name": name, "default_scale": "tiny", "scales": {"tiny": scale}}))
    return path


def wait_final(plan, study_dir: Path, timeout_s: float = 240) -> dict:
    end = time.time() + timeout_s
    while True:
        statuses = job_statuses(plan.jobs, study_dir)
        if all(s.state in FINAL for s in statuses.values()):
            return statuses
        if time.time() > end:
            raise AssertionError(f"jobs not finished after {timeout_s} s: "
                                 + ", ".join(f"{k}={v.state.value} {v.detail}" for k, v in statuses.items()))
        time.sleep(1)


def status_output(study: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["status", str(study)]) == 0
    return capsys.readouterr().out


def test_jobs_import_the_drivers_code_and_see_its_environment(tmp_path, monkeypatch):
    import submitit

    from harness.launch.profiles import load_profile
    from harness.launch.slurm import CODE_ROOT, slurm_parameters, submission_folder, worker_probe
    from harness.spec import Resources

    monkeypatch.setenv("HARNESS_DATA_IMAGENET", "relative/imagenet")
    monkeypatch.chdir(tmp_path)  # the job's working directory is not the repository
    ex = submitit.AutoExecutor(folder=submission_folder(tmp_path / "submitit"), cluster="slurm")
    ex.update_parameters(**slurm_parameters(Resources(timeout_min=5, mem_gb=1), load_profile(str(REPO / "clusters/ci.yaml"))))
    seen = ex.submit(worker_probe).result()
    assert seen["harness"] == str(CODE_ROOT / "harness" / "__init__.py")
    assert seen["python"] == sys.executable
    assert seen["env"]["HARNESS_CACHE"] == os.environ["HARNESS_CACHE"]
    assert seen["env"]["HARNESS_DATA_IMAGENET"] == str(tmp_path / "relative/imagenet")  # made absolute
    assert seen["env"]["HARNESS_RESULTS"] == os.environ["HARNESS_RESULTS"]  # sbatch exports the environment


def test_micro_study_driver_exits_then_status_and_collect(tmp_path, capsys):
    from harness.collect import collect

    study = write_study(tmp_path / "micro.yaml", "micro-slurm", fractions=(0.1, 0.2))
    t0 = time.time()
    driver = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(study), "--executor", "slurm"],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    driver_s = time.time() - t0
    assert driver.returncode == 0, driver.stderr
    assert "4 submitted" in driver.stdout
    plan = make_plan(load_study(study))
    study_dir = Path(os.environ["HARNESS_RESULTS"]) / "micro-slurm"
    # the driver did not wait: right after it returned, the study is in flight and status says so
    out = status_output(study, capsys)
    assert "done 4" not in out and ("running" in out)
    for job in plan.pretrain:
        sub = R.read_json(study_dir / job.id / R.SUBMITTED)
        assert sub["executor"] == "slurm" and "_" in sub["slurm_id"]  # one array for both pre-training jobs
    for job in plan.downstream:
        sub = R.read_json(study_dir / job.id / R.SUBMITTED)
        up = R.read_json(study_dir / job.upstream / R.SUBMITTED)
        spec = subprocess.run(["scontrol", "show", "job", sub["slurm_id"]], capture_output=True, text=True).stdout
        assert f"Dependency=afterok:{up['slurm_id']}" in spec or "JobState=COMPLETED" in spec or "JobState=RUNNING" in spec

    statuses = wait_final(plan, study_dir)
    total_s = time.time() - t0
    assert {s.state for s in statuses.values()} == {JobState.DONE}, statuses
    out = status_output(study, capsys)
    assert "total: done 4" in out and "supervised x synthetic-objects x f0.1 x e1" in out
    frame = collect(study_dir)
    assert set(frame["job_id"]) == {j.id for j in plan.jobs}
    assert len(frame) == 2 * 1 + 2 * 3  # pretrain_loss; top1, top5, train_loss
    print(f"\n[timing] driver {driver_s:.1f} s, micro study on SLURM {total_s:.1f} s")


def test_failed_pretraining_makes_its_downstream_dependency_failed(tmp_path, capsys):
    # a huge learning rate passes planning and makes the loss diverge inside the job
    study = write_study(tmp_path / "bad.yaml", "bad-slurm", method_params={"lr": 1e30})
    plan = make_plan(load_study(study))
    root = Path(os.environ["HARNESS_RESULTS"])
    t0 = time.time()
    launch(plan, executor="slurm", results_root=root, profile="ci")
    statuses = wait_final(plan, root / "bad-slurm")
    pre, down = plan.pretrain[0], plan.downstream[0]
    assert statuses[pre.id].state == JobState.FAILED
    assert "loss is nan at update" in Path(statuses[pre.id].log).read_text()
    assert statuses[down.id].state == JobState.DEPENDENCY_FAILED
    assert statuses[down.id].log == statuses[pre.id].log  # where to look: the failed upstream's log
    # what SLURM itself says about the downstream job: cancelled by the scheduler (not "CANCELLED by <uid>"),
    # reason Dependency; sacct may still show the cancel before its reason
    slurm_id = R.read_json(root / "bad-slurm" / down.id / R.SUBMITTED)["slurm_id"]
    assert sacct_states([slurm_id])[slurm_id] in {("CANCELLED", "Dependency"), ("CANCELLED", "None")}
    out = status_output(study, capsys)
    assert "failed" in out and "dependency-failed" in out and "log: " in out
    # a re-run does not re-submit them unless asked
    again = launch(plan, executor="slurm", results_root=root, profile="ci", dry_run=True)
    assert set(again.skipped_failed) == {pre.id, down.id} and not again.submitted
    retry = launch(plan, executor="slurm", results_root=root, profile="ci", dry_run=True, retry_failed=True)
    assert retry.submitted == [pre.id, down.id]
    assert retry.slurm_records[1]["dependency"] == f"afterok:<slurm id of {pre.id}>"
    print(f"\n[timing] failing study {time.time() - t0:.1f} s")


def _metric_rows(study_dir: Path, job_id: str) -> list[dict]:
    doc = R.read_json(study_dir / job_id / R.METRICS)
    return doc["metrics"], doc["updates"]


def test_preempted_job_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    import submitit
    import torch

    # timeout_min > 10: below that, submitit takes every USR2 for a time-out (it still requeues, but through
    # the time-out branch); here the preemption branch runs
    study = write_study(tmp_path / "pre.yaml", "preempt-slurm", epochs=(8,), downstream=False,
                        resources={"pretrain": {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 15}})
    plan = make_plan(load_study(study))
    job = plan.pretrain[0]
    t0 = time.time()
    interrupted = launch(plan, executor="slurm", results_root=tmp_path / "a", profile="ci").slurm_records[0]
    launch(plan, executor="slurm", results_root=tmp_path / "b", profile="ci")  # the reference, never interrupted
    dir_a, dir_b = tmp_path / "a" / "preempt-slurm", tmp_path / "b" / "preempt-slurm"
    log_a = dir_a / job.id / R.LOG
    end = time.time() + 180
    while not (log_a.exists() and "epoch 2:" in log_a.read_text()):  # a checkpoint exists, training goes on
        assert not (dir_a / job.id / R.METRICS).exists(), "the job finished before it could be interrupted"
        assert time.time() < end, "the job did not reach its second epoch"
        time.sleep(0.3)
    slurm_job = submitit.SlurmJob(folder=interrupted["folder"], job_id=interrupted["slurm_ids"][0])
    slurm_job._interrupt()  # preemption: SIGTERM, then USR2 -> JobRunner.checkpoint -> requeue
    final_a = wait_final(plan, dir_a)[job.id]
    wait_final(plan, dir_b)
    text = log_a.read_text()
    assert text.count(f"job {job.id} starts") == 2, (final_a, text)  # the job ran twice ...
    assert "resumed from" in text  # ... and the second run started from the checkpoint
    resumed_at = int(text.split("resumed from")[1].split("at update")[1].split()[0])
    assert 0 < resumed_at < job.config["schedule"]["total_updates"]
    submitit_log = slurm_job.paths.stderr.read_text() + slurm_job.paths.stdout.read_text()
    assert "this job is preempted" in submitit_log and "Calling checkpoint method" in submitit_log
    assert f"Requeued job {slurm_job.job_id}" in submitit_log
    assert _metric_rows(dir_a, job.id) == _metric_rows(dir_b, job.id)
    state_a = torch.load(dir_a / job.id / R.ENCODER, weights_only=True)["state_dict"]
    state_b = torch.load(dir_b / job.id / R.ENCODER, weights_only=True)["state_dict"]
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_b)
    print(f"\n[timing] preemption + resume {time.time() - t0:.1f} s (resumed at update {resumed_at})")


def test_two_process_gloo_job(tmp_path):
    import json

    import submitit

    resources = {"pretrain": {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 10},
                 "downstream": {"tasks_per_node": 2, "cpus_per_task": 1, "mem_gb": 2, "timeout_min": 10}}
    study = write_study(tmp_path / "ddp.yaml", "ddp-slurm", method="none", resources=resources)
    plan = make_plan(load_study(study))
    root = Path(os.environ["HARNESS_RESULTS"])
    t0 = time.time()
    records = launch(plan, executor="slurm", results_root=root, profile="ci").slurm_records
    statuses = wait_final(plan, root / "ddp-slurm")
    assert {s.state for s in statuses.values()} == {JobState.DONE}, statuses
    down = plan.downstream[0]
    rec = next(r for r in records if r["stage"] == "downstream")
    assert rec["parameters"]["tasks_per_node"] == 2
    env = json.loads((root / "ddp-slurm" / down.id / R.ENV).read_text())
    assert env["world_size"] == 2
    # each rank evaluated the whole validation set with its own copy of the model: equal metrics mean that
    # DistributedDataParallel kept the copies identical while each rank trained on its half of every batch
    per_rank = submitit.SlurmJob(folder=rec["folder"], job_id=rec["slurm_ids"][0], tasks=(0, 1)).results()
    assert len(per_rank) == 2
    assert per_rank[0]["metrics"] == per_rank[1]["metrics"]
    assert per_rank[0]["metrics"] == R.read_json(root / "ddp-slurm" / down.id / R.METRICS)["metrics"]
    print(f"\n[timing] 2-task gloo study {time.time() - t0:.1f} s")


def test_sacct_chunks_read_every_state_of_many_arrays(tmp_path, monkeypatch):
    """With a tiny chunk size every array id goes in its own sacct call, and every task's state still comes back."""
    from harness.launch import state as state_mod

    arrays = []
    for _ in range(5):
        out = subprocess.run(["sbatch", "--parsable", "--array=0-2", "-o", "/dev/null", "-t", "1", "--wrap", "true"],
                             capture_output=True, text=True, timeout=30, check=True)
        arrays.append(out.stdout.strip().split(";")[0])
    tasks = [f"{a}_{i}" for a in arrays for i in range(3)]
    calls = []
    real = state_mod._run_slurm
    monkeypatch.setattr(state_mod, "_run_slurm", lambda cmd: calls.append(cmd) or real(cmd))
    end = time.time() + 60
    while True:
        states = sacct_states(tasks, max_chars=max(len(a) for a in arrays))
        if set(tasks) <= set(states) or time.time() > end:
            break
        time.sleep(1)
    assert set(tasks) <= set(states), (tasks, states)
    assert all(len(c[-1].split(",")) == 1 for c in calls)  # one array per call
