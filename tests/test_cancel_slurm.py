"""`harness cancel` on the single-node SLURM cluster: the jobs a study recorded are cancelled by their ids."""

from __future__ import annotations

import subprocess
import time

from harness import results as R
from harness.launch.cancel import cancel
from harness.launch.state import queued_states
from tests.test_slurm_cluster import _cluster_required, pytestmark  # noqa: F401  (same skip / require rules)


def test_cancel_stops_the_recorded_slurm_jobs_of_a_stage(tmp_path):
    study_dir = tmp_path / "micro"
    ids = {}
    for job in ("pre-a-1", "finetune.x-a-1"):
        out = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 300"], capture_output=True,
                             text=True, check=True)
        ids[job] = out.stdout.strip().split(";")[0]
        (study_dir / job).mkdir(parents=True)
        R.atomic_write_json(study_dir / job / R.SUBMITTED, {"executor": "slurm", "slurm_id": ids[job]})
    try:
        assert cancel(study_dir, stage="downstream") == [f"finetune.x-a-1: slurm {ids['finetune.x-a-1']}"]
        deadline = time.time() + 60
        while ids["finetune.x-a-1"] in queued_states() and time.time() < deadline:
            time.sleep(0.5)
        queued = queued_states()
        assert ids["finetune.x-a-1"] not in queued and ids["pre-a-1"] in queued
        assert cancel(study_dir) == [f"pre-a-1: slurm {ids['pre-a-1']}"]
    finally:
        subprocess.run(["scancel", *ids.values()], capture_output=True)
