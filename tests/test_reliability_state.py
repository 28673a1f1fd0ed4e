"""Job states that must not lie: corrupt result files, stale or foreign pids, a trainer that outlived its job
process, claims that give each job to exactly one driver, and a results root that cannot be written."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from harness import results as R
from harness.cli import main
from harness.collect import collect_frame
from harness.errors import CorruptResultError, StorageError
from harness.launch import launch, select
from harness.launch.state import claim_jobs, job_statuses
from harness.plan import make_plan
from harness.results import JobState
from harness.spec import load_study
from tests.micro import write_micro


@pytest.fixture
def micro(tmp_path):
    plan = make_plan(load_study(write_micro(tmp_path, methods=["supervised"], fractions=[0.1])))
    return plan, tmp_path / "results" / "micro"


def _done(job_dir, doc=None):
    job_dir.mkdir(parents=True, exist_ok=True)
    R.atomic_write_json(job_dir / R.SPEC, {})
    R.atomic_write_json(job_dir / R.METRICS, doc or {"job_id": job_dir.name, "stage": "pretrain",
                                                      "metrics": [{"name": "top1", "value": 1.0}]})


# --- corrupt result files ---------------------------------------------------------------------------------------

CORRUPT = {"truncated": '{"job_id": "x", "stage": "pretrain", "metr',
           "a list": "[]",
           "metric without a name": '{"job_id": "x", "stage": "pretrain", "metrics": [{"value": 1.0}]}',
           "value not a number": '{"job_id": "x", "stage": "pretrain", "metrics": [{"name": "a", "value": "hi"}]}',
           "no metrics": '{"job_id": "x", "stage": "pretrain"}',
           "provenance not an object": '{"job_id": "x", "metrics": [{"name": "a", "value": 1.0}], "provenance": "abc"}'}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_metrics_file_is_named_by_read_metrics(tmp_path, case):
    (tmp_path / R.METRICS).write_text(CORRUPT[case])
    with pytest.raises(CorruptResultError, match=str(tmp_path / R.METRICS)):
        R.read_metrics(tmp_path)


@pytest.mark.parametrize("case", list(CORRUPT))
def test_status_reports_a_corrupt_metrics_file_by_path(micro, case, capsys):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    _done(study_dir / pre.id)
    (study_dir / pre.id / R.METRICS).write_text(CORRUPT[case])
    st = job_statuses(plan.jobs, study_dir)[pre.id]
    assert st.state == JobState.FAILED and st.log == str(study_dir / pre.id / R.METRICS)
    assert "corrupt result file" in st.detail
    main(["status", plan.study.source, "--results", str(study_dir.parent)])
    out = capsys.readouterr().out
    assert f"log: {study_dir / pre.id / R.METRICS}" in out and "corrupt result file" in out


@pytest.mark.parametrize("case", list(CORRUPT))
def test_collect_skips_a_corrupt_metrics_file_naming_it(micro, case, capsys):
    plan, study_dir = micro
    pre, down = plan.pretrain[0], plan.downstream[0]
    _done(study_dir / down.id, {"job_id": down.id, "stage": "downstream", "metrics": [{"name": "top1", "value": 3}]})
    _done(study_dir / pre.id)
    (study_dir / pre.id / R.METRICS).write_text(CORRUPT[case])
    frame = collect_frame(study_dir)
    assert list(frame["job_id"]) == [down.id]
    assert f"corrupt result file {study_dir / pre.id / R.METRICS}" in capsys.readouterr().err


# --- stale, foreign and live processes --------------------------------------------------------------------------

def _submitted(job_dir, **record):
    job_dir.mkdir(parents=True, exist_ok=True)
    R.atomic_write_json(job_dir / R.SUBMITTED, {"executor": "local", **record})


def test_pid_now_held_by_an_unrelated_process_reads_as_interrupted(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    _submitted(study_dir / pre.id, pid=1, process={"pid": 1, "start": 123456789, "host": R.process_identity()["host"]})
    st = job_statuses(plan.jobs, study_dir)[pre.id]
    assert (st.state, st.detail) == (JobState.PENDING, "interrupted")


def test_pid_without_a_start_time_is_not_trusted(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    _submitted(study_dir / pre.id, pid=1)  # what an older harness wrote: pid 1 is alive, but not this job
    assert job_statuses(plan.jobs, study_dir)[pre.id].state == JobState.PENDING


def test_live_process_with_its_start_time_reads_as_running(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    _submitted(study_dir / pre.id, process=R.process_identity())
    assert job_statuses(plan.jobs, study_dir)[pre.id].state == JobState.RUNNING


def test_process_on_another_host_cannot_be_checked_and_counts_as_running(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    _submitted(study_dir / pre.id, process={"pid": 1, "start": 1, "host": "some-other-node"})
    assert job_statuses(plan.jobs, study_dir)[pre.id].state == JobState.RUNNING


def test_live_trainer_of_a_failed_job_is_running_and_not_retried(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    d = study_dir / pre.id
    _submitted(d, pid=1)
    R.atomic_write_json(d / R.FAILED, {"error": "the job process ended without a result"})
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        R.atomic_write_json(d / R.WORKER, R.process_identity(trainer.pid))
        st = job_statuses(plan.jobs, study_dir)[pre.id]
        assert st.state == JobState.RUNNING and f"trainer pid {trainer.pid}" in st.detail
        report = launch(plan, executor="local", results_root=study_dir.parent, retry_failed=True, dry_run=True)
        assert pre.id in report.skipped_running and pre.id not in report.submitted
    finally:
        trainer.kill()
        trainer.wait()
    assert job_statuses(plan.jobs, study_dir)[pre.id].state == JobState.FAILED


def test_trainer_record_of_another_host_is_left_to_the_scheduler(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    d = study_dir / pre.id
    _submitted(d, pid=1)
    R.atomic_write_json(d / R.FAILED, {"error": "slurm 12 TIMEOUT"})
    R.atomic_write_json(d / R.WORKER, {"pid": 1, "start": 1, "host": "gpu-node-7"})  # killed, never cleaned up
    assert job_statuses(plan.jobs, study_dir)[pre.id].state == JobState.FAILED


def test_a_second_trainer_on_one_folder_is_refused(micro):
    from filelock import FileLock

    from harness.launch import job_spec

    plan, study_dir = micro
    spec = job_spec(plan.pretrain[0], plan, study_dir)
    spec.job_dir.mkdir(parents=True)
    R.atomic_write_json(spec.job_dir / R.WORKER, {"pid": 4242, "host": "node7"})
    with FileLock(spec.job_dir / R.RUN_LOCK):  # another process trains the folder
        code = ("import json, harness.job as J; J.RUN_LOCK_TIMEOUT_S = 0.1; "
                f"J.run_job(J.JobSpec(**json.loads({json.dumps(json.dumps(vars(spec)))})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode != 0
    assert f"AlreadyRunning: job {spec.job_id} is already being trained by pid 4242 on node7" in out.stderr


# --- claims -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["local", "debug", "slurm"])
def test_two_drivers_that_read_the_same_states_get_disjoint_jobs(micro, executor):
    plan, study_dir = micro
    seen_by_a = job_statuses(plan.jobs, study_dir)
    seen_by_b = job_statuses(plan.jobs, study_dir)
    chosen_a, _ = select(plan, seen_by_a, retry_failed=False)
    chosen_b, _ = select(plan, seen_by_b, retry_failed=False)
    assert len(chosen_a) == len(chosen_b) == len(plan.jobs)
    won_a = claim_jobs(chosen_a, seen_by_a, study_dir, executor)
    won_b = claim_jobs(chosen_b, seen_by_b, study_dir, executor)
    assert [j.id for j in won_a] == [j.id for j in plan.jobs] and won_b == []
    claims = {R.read_json(study_dir / j.id / R.SUBMITTED)["claim"] for j in plan.jobs}
    assert len(claims) == len(plan.jobs)


def test_a_failed_job_retried_by_two_drivers_is_claimed_once(micro):
    plan, study_dir = micro
    pre = plan.pretrain[0]
    _submitted(study_dir / pre.id, pid=1)
    R.atomic_write_json(study_dir / pre.id / R.FAILED, {"error": "boom"})
    views = [job_statuses(plan.jobs, study_dir) for _ in range(2)]
    won = [claim_jobs(select(plan, v, retry_failed=True)[0], v, study_dir, "local") for v in views]
    assert [j.id for j in won[0]] == [j.id for j in plan.jobs] and won[1] == []


def test_slurm_downstream_is_not_claimed_apart_from_its_upstream(micro):
    plan, study_dir = micro
    pre, down = plan.pretrain[0], plan.downstream[0]
    seen_by_b = job_statuses(plan.jobs, study_dir)
    claim_jobs([pre], job_statuses(plan.jobs, study_dir), study_dir, "slurm")  # driver A took the upstream
    assert claim_jobs([down], seen_by_b, study_dir, "slurm") == []  # B cannot know A's SLURM id yet
    R.atomic_write_json(study_dir / pre.id / R.SUBMITTED, {"executor": "slurm", "slurm_id": "77"})
    assert claim_jobs([down], seen_by_b, study_dir, "slurm") == [down]


def test_a_job_finished_since_the_states_were_read_is_not_claimed(micro):
    plan, study_dir = micro
    seen = job_statuses(plan.jobs, study_dir)
    _done(study_dir / plan.pretrain[0].id)
    assert [j.id for j in claim_jobs(plan.jobs, seen, study_dir, "local")] == [plan.downstream[0].id]


# --- the results root -------------------------------------------------------------------------------------------

def test_disk_full_names_the_file(tmp_path, monkeypatch):
    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match=f"no space left on device: {tmp_path / 'a.json'}"):
        R.atomic_write_json(tmp_path / "a.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code,message", [(errno.EROFS, "results root is read-only"),
                                          (errno.ENOSPC, "no space left on device"),
                                          (errno.EACCES, "results root is not writable")])
def test_unwritable_results_root_stops_run_before_any_job(micro, monkeypatch, capsys, code, message):
    import tempfile

    plan, study_dir = micro

    def refuse(*_a, **_k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    assert main(["run", plan.study.source, "--results", str(study_dir.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and err.endswith(f": {study_dir.parent}")
    assert not any(study_dir.glob("*/" + R.SUBMITTED))


def test_collect_labels_jobs_reused_from_another_scale_with_the_plans_scale(micro):
    """A job's identity leaves the scale out, so a plan at one scale reuses a job another scale ran first (random
    init, for one); its rows must enter this scale's report, which keeps only rows of its own scale."""
    from harness.collect import collect

    plan, study_dir = micro
    pre = plan.pretrain[0]
    _done(study_dir / pre.id, {"job_id": pre.id, "stage": "pretrain", "scale": "tiny",
                               "metrics": [{"name": "pretrain_loss", "value": 1.0}]})
    assert set(collect(study_dir, only={pre.id})["scale"]) == {"tiny"}
    assert set(collect(study_dir, only={pre.id}, scale="tiny-long")["scale"]) == {"tiny-long"}
