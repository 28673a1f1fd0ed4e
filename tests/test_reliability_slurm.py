"""Two drivers submit one study to the CI SLURM cluster at the same moment: every job is submitted and runs
exactly once, and each downstream job depends on its pre-training job's SLURM id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import results as R
from harness.plan import make_plan
from harness.results import JobState
from harness.spec import load_study
from tests.test_slurm_cluster import CLUSTER_UP, REPO, REQUIRED, wait_final, write_study

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(not CLUSTER_UP and not REQUIRED, reason="no SLURM cluster here; start it with `make slurm-up`"),
]


def test_two_slurm_drivers_submit_every_job_exactly_once(tmp_path):
    study = write_study(tmp_path / "race.yaml", "race-slurm", fractions=(0.1, 0.2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(study), "--executor", "slurm"]
    drivers = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [d.communicate(timeout=180)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    plan = make_plan(load_study(study))
    submitted = sum(int(o.split(" submitted")[0].rsplit(", ", 1)[1]) for o in outputs)
    assert submitted == len(plan.jobs), outputs
    study_dir = Path(os.environ["HARNESS_RESULTS"]) / "race-slurm"
    slurm_ids = {j.id: R.read_json(study_dir / j.id / R.SUBMITTED)["slurm_id"] for j in plan.jobs}
    assert len(set(slurm_ids.values())) == len(plan.jobs)
    for job in plan.downstream:
        spec = subprocess.run(["scontrol", "show", "job", slurm_ids[job.id]], capture_output=True, text=True).stdout
        assert (f"Dependency=afterok:{slurm_ids[job.upstream]}" in spec or "JobState=COMPLETED" in spec
                or "JobState=RUNNING" in spec), spec
    statuses = wait_final(plan, study_dir)
    assert {s.state for s in statuses.values()} == {JobState.DONE}, statuses
    for job in plan.jobs:
        assert (study_dir / job.id / R.LOG).read_text().count(" starts (") == 1, job.id
