"""End to end with real processes: two drivers on one study run every job exactly once, a job process killed
under its trainer does not leave the trainer running, and failures reach the console as one useful line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness import results as R
from harness.plan import make_plan
from harness.spec import load_study
from tests.micro import write_micro

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HARNESS_THREADS": "1", "PYTHONPATH": os.getcwd()}


def _harness(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, **kwargs)


def _starts(job_dir) -> int:
    log = job_dir / R.LOG
    return log.read_text().count(" starts (") if log.exists() else 0


def test_two_local_drivers_run_every_job_exactly_once(tmp_path):
    path = write_micro(tmp_path, fractions=[0.1])
    plan = make_plan(load_study(path))
    root = tmp_path / "results"
    drivers = [_harness("run", str(path), "--results", str(root), "--max-parallel", "2") for _ in range(2)]
    outputs = [d.communicate(timeout=600)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    for job in plan.jobs:
        assert _starts(root / "micro" / job.id) == 1, job.id
        assert R.read_metrics(root / "micro" / job.id) is not None
    submitted = [int(o.split(" submitted")[0].rsplit(", ", 1)[1]) for o in outputs]
    assert sum(submitted) == len(plan.jobs)
    assert any(f"{len(plan.jobs) - n} running" in o for n, o in zip(submitted, outputs))


def _wait_for(predicate, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_killed_job_process_does_not_leave_its_trainer_running(tmp_path):
    # long enough that the trainer cannot finish between its start and the kill on an idle machine
    path = write_micro(tmp_path, methods=["supervised"], fractions=[0.1], epochs=[2000])
    plan = make_plan(load_study(path))
    pre_dir = tmp_path / "results" / "micro" / plan.pretrain[0].id
    driver = _harness("run", str(path), "--results", str(tmp_path / "results"))
    worker = _wait_for(lambda: R.read_json(pre_dir / R.WORKER))
    job_process = R.read_json(pre_dir / R.SUBMITTED)["pid"]
    assert job_process != worker["pid"]  # submitit's job process, and the trainer it started
    os.kill(job_process, signal.SIGKILL)
    out = driver.communicate(timeout=120)[0]
    assert driver.returncode == 1
    assert not R.identity_alive(worker), "the trainer outlived its job"
    failed = R.read_json(pre_dir / R.FAILED)
    assert f"stopped its trainer pid {worker['pid']}" in failed["error"]
    assert f"FAILED {plan.pretrain[0].id}: the job process ended without a result" in out


def test_killed_driver_leaves_a_trainer_that_a_second_driver_does_not_duplicate(tmp_path):
    path = write_micro(tmp_path, methods=["supervised"], fractions=[0.1], epochs=[40])
    plan = make_plan(load_study(path))
    pre_dir = tmp_path / "results" / "micro" / plan.pretrain[0].id
    driver = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(path), "--results",
                               str(tmp_path / "results")], env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    worker = _wait_for(lambda: R.read_json(pre_dir / R.WORKER))
    try:
        driver.send_signal(signal.SIGKILL)  # the driver only: its job process and trainer go on
        driver.wait()
        assert R.identity_alive(worker)
        second = _harness("run", str(path), "--results", str(tmp_path / "results"), "--retry-failed")
        out = second.communicate(timeout=300)[0]
        # the orphaned trainer keeps its job; the second driver takes over the downstream job that the killed
        # driver had queued, waits for the trainer to finish, then runs it
        assert second.returncode == 0 and "1 running" in out and "1 submitted" in out, out
        assert _starts(pre_dir) == 1 and R.read_metrics(pre_dir) is not None
        assert R.read_metrics(pre_dir.parent / plan.downstream[0].id) is not None
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_failed_local_job_shows_the_exception_and_the_traceback_path(tmp_path):
    path = write_micro(tmp_path, methods=["supervised"], fractions=[0.1],
                       method_params={"supervised": {"batch_size": 32, "lr": 1e30}})
    plan = make_plan(load_study(path))
    pre = plan.pretrain[0]
    driver = _harness("run", str(path), "--results", str(tmp_path / "results"))
    out = driver.communicate(timeout=300)[0]
    assert driver.returncode == 1
    traceback_path = tmp_path / "results" / "micro" / pre.id / R.TRACEBACK
    line = next(ln for ln in out.splitlines() if ln.startswith(f"FAILED {pre.id}"))
    assert "FloatingPointError: loss is nan at update" in line and f"(traceback: {traceback_path})" in line
    assert "submitit" not in line


def test_debug_executor_without_a_terminal_does_not_open_pdb(tmp_path):
    path = write_micro(tmp_path, methods=["supervised"], fractions=[0.1],
                       method_params={"supervised": {"batch_size": 32, "lr": 1e30}})
    driver = _harness("run", str(path), "--results", str(tmp_path / "results"), "--executor", "debug")
    out = driver.communicate(timeout=300)[0]
    assert driver.returncode == 1 and "(Pdb)" not in out
    assert "loss is nan at update" in out
