"""Job states: from the results folder, plus liveness of local processes and batched ``sacct`` calls for jobs
submitted to SLURM (one per ``SACCT_ARG_CHARS`` of ids, never one per job); one ``squeue`` call double-checks
jobs that sacct says ended without a result. A failed query raises ``SlurmQueryError``."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import results as R
from harness.errors import HarnessError
from harness.plan import Job
from harness.results import JobState

SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING",
                "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"}
SLURM_FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                "DEADLINE", "REVOKED"}


@dataclass
class JobStatus:
    state: JobState
    detail: str = ""  # e.g. the SLURM state, or the error
    log: str | None = None  # where to look when it failed


def _array_task_ids(job_id: str) -> list[str]:
    """``"12_[0-3,7%2]"`` -> ``["12_0", ..., "12_3", "12_7"]``; other ids unchanged. sacct prints an array's
    tasks that never started (pending, or cancelled because a dependency failed) as one bracketed row."""
    if "_[" not in job_id:
        return [job_id]
    base, spec = job_id.split("_[", 1)
    ids = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        ids += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return ids


# ids per sacct call: their comma-joined list stays well under Linux's 128 KiB cap on one argument
SACCT_ARG_CHARS = 64_000


class SlurmQueryError(HarnessError):
    """sacct or squeue failed: the states of SLURM jobs are unknown (never read as "no state")."""


def _run_slurm(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmQueryError(f"{cmd[0]} failed ({e}); the SLURM jobs' states are unknown") from None
    if out.returncode != 0:
        raise SlurmQueryError(f"{cmd[0]} failed (exit {out.returncode}: {out.stderr.strip()[:500]}); "
                              "the SLURM jobs' states are unknown")
    return out.stdout


def id_chunks(ids: list[str], max_chars: int) -> list[list[str]]:
    """``ids`` in groups whose comma-joined length is at most ``max_chars`` (one id per group at least)."""
    chunks: list[list[str]] = [[]]
    length = 0
    for i in ids:
        if chunks[-1] and length + 1 + len(i) > max_chars:
            chunks.append([])
            length = 0
        length += len(i) + (1 if chunks[-1] else 0)
        chunks[-1].append(i)
    return chunks if chunks[0] else []


def sacct_states(slurm_ids: list[str], max_chars: int | None = None) -> dict[str, tuple[str, str]]:
    """``{slurm_id: (state, reason)}`` from batched ``sacct`` calls (one per ``SACCT_ARG_CHARS`` of ids, never
    one per job); empty when sacct is not installed; ``SlurmQueryError`` when a call fails.

    Array tasks (``12_3``) are queried through their array's id (``12``): sacct does not find a task by its
    own id while the array still holds it as a bracketed, never-started row. The state keeps sacct's wording
    (``CANCELLED by 0`` is a cancel by user 0; a plain ``CANCELLED`` with reason ``Dependency`` is SLURM
    killing a job whose ``afterok`` dependency can never be satisfied).
    """
    if not slurm_ids or shutil.which("sacct") is None:
        return {}
    queried = sorted({sid.split("_")[0] for sid in slurm_ids})
    states: dict[str, tuple[str, str]] = {}
    for chunk in id_chunks(queried, max_chars or SACCT_ARG_CHARS):
        stdout = _run_slurm(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Reason", "-j", ",".join(chunk)])
        for line in stdout.splitlines():
            parts = line.split("|")
            if len(parts) < 2 or not parts[0]:
                continue
            for task_id in _array_task_ids(parts[0]):
                states[task_id] = (parts[1].strip(), parts[2].strip() if len(parts) > 2 else "")
    return states


def queued_states() -> dict[str, str]:
    """``{slurm_id: state}`` of this user's jobs that the controller still holds (one ``squeue`` call)."""
    import getpass

    if shutil.which("squeue") is None:
        return {}
    states: dict[str, str] = {}
    for line in _run_slurm(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"]).splitlines():
        job_id, _, state = line.partition("|")
        for task_id in _array_task_ids(job_id.strip()):
            states[task_id] = state.strip()
    return states


def _is_dependency_kill(state: str, reason: str) -> bool:
    # a job that completed after waiting on a dependency also keeps reason "Dependency"; a user's scancel
    # of a waiting job reads "CANCELLED by <uid>"; only SLURM's own kill-on-invalid-dep is plain CANCELLED
    return state == "CANCELLED" and reason.startswith("Dependency")


def job_statuses(jobs: list[Job], study_dir: Path, query_slurm: bool = True) -> dict[str, JobStatus]:
    statuses: dict[str, JobStatus] = {}
    in_slurm: dict[str, str] = {}
    submitted: dict[str, dict] = {}  # submitted.json of the jobs in SLURM, read once
    failed_in_slurm: dict[str, str] = {}
    for job in jobs:
        d = study_dir / job.id
        state = R.local_job_state(d)
        if state in (JobState.FAILED, JobState.DEPENDENCY_FAILED):
            failed = R.read_json(d / R.FAILED) or {}
            statuses[job.id] = JobStatus(state, failed.get("error", ""), failed.get("log") or str(d / R.LOG))
            sub = R.read_json(d / R.SUBMITTED) or {}
            if state == JobState.FAILED and sub.get("executor") == "slurm" and sub.get("slurm_id"):
                failed_in_slurm[job.id] = sub["slurm_id"]  # unless SLURM requeued it (checked below)
            continue
        if state != JobState.RUNNING:
            statuses[job.id] = JobStatus(state)
            continue
        sub = R.read_json(d / R.SUBMITTED) or {}
        if sub.get("executor") == "slurm" and sub.get("slurm_id"):
            in_slurm[job.id] = sub["slurm_id"]
            submitted[job.id] = sub
            statuses[job.id] = JobStatus(JobState.RUNNING, "submitted")
        elif sub.get("pid") and R.pid_alive(int(sub["pid"])):
            statuses[job.id] = JobStatus(JobState.RUNNING, f"pid {sub['pid']}")
        else:  # a local process that is gone without a result: it was killed; it will resume when re-run
            statuses[job.id] = JobStatus(JobState.PENDING, "interrupted")
    if in_slurm and query_slurm:
        states = sacct_states(list(in_slurm.values()))
        upstream_of = {j.id: j.upstream for j in jobs}
        for job_id, slurm_id in in_slurm.items():
            if slurm_id not in states:
                continue
            full_state, reason = states[slurm_id]
            st = full_state.split()[0] if full_state else "UNKNOWN"
            log = submitted[job_id].get("stderr")
            if st in SLURM_ACTIVE:  # queued counts as running: it must not be submitted again
                why = f" ({reason})" if st == "PENDING" and reason not in ("", "None") else ""
                statuses[job_id] = JobStatus(JobState.RUNNING, f"slurm {slurm_id} {st}{why}")
            elif _is_dependency_kill(full_state, reason):
                upstream = upstream_of[job_id]
                up_log = statuses[upstream].log if upstream in statuses else None
                statuses[job_id] = JobStatus(JobState.DEPENDENCY_FAILED,
                                             f"slurm {slurm_id} cancelled: dependency {upstream} failed", up_log or log)
            elif st in SLURM_FAILED:
                statuses[job_id] = JobStatus(JobState.FAILED, f"slurm {slurm_id} {full_state}", log)
            elif st == "COMPLETED":  # completed without metrics.json: re-read the folder (it may have just finished)
                s2 = R.local_job_state(study_dir / job_id)
                statuses[job_id] = JobStatus(s2 if s2 != JobState.RUNNING else JobState.FAILED,
                                             f"slurm {slurm_id} {st}", log)
    ended = {job_id: slurm_id for job_id, slurm_id in {**in_slurm, **failed_in_slurm}.items()
             if statuses[job_id].state == JobState.FAILED}
    if ended and query_slurm:
        # a job the controller still queues is not over, whatever sacct or the folder said: sacct can lag
        # behind the controller, and an attempt that failed while being preempted has been requeued
        queued = queued_states()
        for job_id, slurm_id in ended.items():
            if (st := queued.get(slurm_id)) in SLURM_ACTIVE:
                statuses[job_id] = JobStatus(JobState.RUNNING, f"slurm {slurm_id} {st} (queued again)")
    return statuses
