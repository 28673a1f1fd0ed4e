"""``harness cancel``: stop what a study runs, by the ids its folder recorded.

Local and debug drivers register under ``<study>/drivers/<pid>.json`` while they run; local jobs recorded their
process id in ``submitted.json``, SLURM jobs their job id. A cancelled local job keeps its checkpoint and
reads ``pending (interrupted)``: the next ``harness run`` resumes it. Cancelled SLURM jobs read failed
(``CANCELLED``) and resume with ``--retry-failed``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import results as R

DRIVERS = "drivers"


@contextmanager
def registered_driver(study_dir: Path, executor: str) -> Iterator[None]:
    """Record this process as a driver of the study while it runs (so that ``cancel`` can stop it)."""
    path = study_dir / DRIVERS / f"{os.getpid()}.json"
    R.atomic_write_json(path, {"pid": os.getpid(), "executor": executor, "started_at": time.time()})
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _stop(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace_s``."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and any(R.pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if R.pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stage(job_dir: Path) -> str:
    return "pretrain" if job_dir.name.startswith("pre-") else "downstream"  # the plan's job-id convention


def running_jobs(study_dir: Path, stage: str | None = None) -> list[tuple[Path, dict]]:
    """(job folder, submitted.json) of the study's jobs submitted and not finished, of ``stage`` if given."""
    out = []
    for d in sorted(p for p in study_dir.iterdir() if p.is_dir()) if study_dir.is_dir() else []:
        if R.local_job_state(d) != R.JobState.RUNNING:
            continue
        if stage is not None and _stage(d) != stage:
            continue
        out.append((d, R.read_json(d / R.SUBMITTED) or {}))
    return out


def cancel(study_dir: Path, stage: str | None = None) -> list[str]:
    """Stop the study's drivers (all stages only) and running jobs; returns one line per thing stopped."""
    lines: list[str] = []
    drivers = []
    if stage is None and (study_dir / DRIVERS).is_dir():
        for f in sorted((study_dir / DRIVERS).glob("*.json")):
            pid = int((R.read_json(f) or {}).get("pid", 0))
            if pid and pid != os.getpid() and R.pid_alive(pid):
                drivers.append(pid)
                lines.append(f"driver pid {pid}")
            else:
                f.unlink(missing_ok=True)
    _stop(drivers)  # first, so that no driver starts another job
    local, slurm = [], {}
    for d, sub in running_jobs(study_dir, stage):
        if sub.get("executor") == "slurm" and sub.get("slurm_id"):
            slurm[d.name] = str(sub["slurm_id"])
        elif sub.get("pid") and R.pid_alive(int(sub["pid"])):
            local.append(int(sub["pid"]))
            lines.append(f"{d.name}: pid {sub['pid']}")
    _stop(local)
    if slurm:  # only what the controller still holds (one squeue call)
        from harness.launch.state import queued_states

        queued = queued_states()
        slurm = {job: sid for job, sid in slurm.items() if sid in queued}
    if slurm:
        if shutil.which("scancel") is None:
            raise RuntimeError(f"{len(slurm)} SLURM jobs to cancel, but scancel is not on PATH here")
        subprocess.run(["scancel", *sorted(set(slurm.values()))], check=True, capture_output=True, text=True)
        lines += [f"{job}: slurm {sid}" for job, sid in slurm.items()]
    return lines
