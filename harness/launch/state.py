"""Job states: from the results folder, plus liveness of local processes and batched ``sacct`` calls for jobs
submitted to SLURM (one per ``SACCT_ARG_CHARS`` of ids, never one per job); one ``squeue`` call double-checks
jobs that sacct says ended without a result. A failed query raises ``SlurmQueryError``.

Claims: before a driver runs or submits a job it claims it (``claim_jobs``): under the job folder's claim lock
it checks that the folder is as it was when the driver read the states, then writes ``submitted.json`` with a
fresh token and its own identity (pid, start time, host). Of two drivers on one study each job goes to exactly
one; the other reports it as running. A process is alive only if its pid still runs with the recorded start
time, so a pid the system gave to another process reads as interrupted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from harness import results as R
from harness.errors import CorruptResultError, HarnessError
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
    seen: str = ""  # the folder's claim signature when the state was read (see ``claim_jobs``)


def signature(job_dir: Path) -> str:
    """What a claim compares: whether the job finished, and its ``submitted.json`` as written."""
    try:
        submitted = (job_dir / R.SUBMITTED).read_text()
    except OSError:
        submitted = ""
    return f"{(job_dir / R.METRICS).exists()}|{submitted}"


NO_FOLDER_SIGNATURE = "False|"  # ``signature`` of a job folder that does not exist


def _folder_names(study_dir: Path) -> set[str]:
    """The study folder's entries, in one listing."""
    try:
        with os.scandir(study_dir) as entries:
            return {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def trainer_alive(job_dir: Path) -> dict | None:
    """The identity of the live process training this job on this host, or None (see ``harness.job``'s run
    lock). A trainer on another host (a SLURM node) is not checked here: the scheduler's state decides."""
    worker = R.read_json(job_dir / R.WORKER)
    if not worker or worker.get("host") != R.process_identity()["host"]:
        return None
    return worker if R.identity_alive(worker) else None


def claim_alive(job_dir: Path) -> str:
    """Why a local or debug job submitted to this folder is still in hand ("" when nobody holds it): its
    trainer, its job process or the driver that claimed it still runs."""
    if worker := trainer_alive(job_dir):
        return f"pid {worker['pid']} on {worker['host']}"
    sub = R.read_json(job_dir / R.SUBMITTED) or {}
    if R.identity_alive(sub.get("process")):
        return f"pid {sub['process']['pid']}"
    if not sub.get("released") and R.identity_alive(sub.get("driver")):
        return f"queued by driver pid {sub['driver']['pid']}"
    return ""

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


def _failed(status: JobStatus | None) -> bool:
    return status is not None and status.state in (JobState.FAILED, JobState.DEPENDENCY_FAILED)


def _is_dependency_kill(state: str, reason: str) -> bool:
    # a job that completed after waiting on a dependency also keeps reason "Dependency"; a user's scancel
    # of a waiting job reads "CANCELLED by <uid>"; only SLURM's own kill-on-invalid-dep is plain CANCELLED
    return state == "CANCELLED" and reason.startswith("Dependency")


def job_statuses(jobs: list[Job], study_dir: Path, query_slurm: bool = True) -> dict[str, JobStatus]:
    statuses: dict[str, JobStatus] = {}
    in_slurm: dict[str, str] = {}
    submitted: dict[str, dict] = {}  # submitted.json of the jobs in SLURM, read once
    failed_in_slurm: dict[str, str] = {}
    folders = _folder_names(study_dir)
    for job in jobs:
        if job.id not in folders:  # never started: nothing in its folder to read
            statuses[job.id] = JobStatus(JobState.PENDING, seen=NO_FOLDER_SIGNATURE)
            continue
        d = study_dir / job.id
        state = R.local_job_state(d)
        if state != JobState.DONE and (worker := trainer_alive(d)):  # e.g. a trainer whose job process was killed
            statuses[job.id] = JobStatus(JobState.RUNNING, f"trainer pid {worker['pid']} on {worker['host']}",
                                         seen=signature(d))
            continue
        if state == JobState.FAILED and (corrupt := _corrupt_metrics(d)):
            statuses[job.id] = JobStatus(state, str(corrupt), corrupt.path, seen=signature(d))
            continue
        if state in (JobState.FAILED, JobState.DEPENDENCY_FAILED):
            failed = R.read_json(d / R.FAILED) or {}
            statuses[job.id] = JobStatus(state, failed.get("error", ""), failed.get("log") or str(d / R.LOG),
                                         seen=signature(d))
            sub = R.read_json(d / R.SUBMITTED) or {}
            if state == JobState.FAILED and sub.get("executor") == "slurm" and sub.get("slurm_id"):
                failed_in_slurm[job.id] = sub["slurm_id"]  # unless SLURM requeued it (checked below)
            continue
        if state != JobState.RUNNING:
            statuses[job.id] = JobStatus(state, seen=signature(d) if state == JobState.PENDING else "")
            continue
        seen = signature(d)
        sub = R.read_json(d / R.SUBMITTED) or {}
        if sub.get("executor") == "slurm" and sub.get("slurm_id"):
            in_slurm[job.id] = sub["slurm_id"]
            submitted[job.id] = sub
            statuses[job.id] = JobStatus(JobState.RUNNING, "submitted", seen=seen)
        elif why := claim_alive(d):
            statuses[job.id] = JobStatus(JobState.RUNNING, why, seen=seen)
        else:  # a process that is gone without a result (killed, or a pid now held by another process): resume
            statuses[job.id] = JobStatus(JobState.PENDING, "interrupted", seen=seen)
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
                statuses[job_id] = JobStatus(JobState.RUNNING, f"slurm {slurm_id} {st}{why}",
                                             seen=statuses[job_id].seen)
            elif _is_dependency_kill(full_state, reason) or (
                    full_state == "CANCELLED" and _failed(statuses.get(upstream_of[job_id]))):
                # sacct may show the scheduler's cancel before its reason; a job whose upstream failed cannot run
                upstream = upstream_of[job_id]
                up_log = statuses[upstream].log if upstream in statuses else None
                statuses[job_id] = JobStatus(JobState.DEPENDENCY_FAILED,
                                             f"slurm {slurm_id} cancelled: dependency {upstream} failed", up_log or log)
            elif st in SLURM_FAILED:
                statuses[job_id] = JobStatus(JobState.FAILED, f"slurm {slurm_id} {full_state}", log,
                                             seen=statuses[job_id].seen)
            elif st == "COMPLETED":  # completed without metrics.json: re-read the folder (it may have just finished)
                s2 = R.local_job_state(study_dir / job_id)
                statuses[job_id] = JobStatus(s2 if s2 != JobState.RUNNING else JobState.FAILED,
                                             f"slurm {slurm_id} {st}", log, seen=statuses[job_id].seen)
    ended = {job_id: slurm_id for job_id, slurm_id in {**in_slurm, **failed_in_slurm}.items()
             if statuses[job_id].state == JobState.FAILED}
    if ended and query_slurm:
        # a job the controller still queues is not over, whatever sacct or the folder said: sacct can lag
        # behind the controller, and an attempt that failed while being preempted has been requeued
        queued = queued_states()
        for job_id, slurm_id in ended.items():
            if (st := queued.get(slurm_id)) in SLURM_ACTIVE:
                statuses[job_id] = JobStatus(JobState.RUNNING, f"slurm {slurm_id} {st} (queued again)",
                                             seen=statuses[job_id].seen)
    return statuses


def _corrupt_metrics(job_dir: Path) -> CorruptResultError | None:
    try:
        R.read_metrics(job_dir)
    except CorruptResultError as e:
        return e
    return None


CLAIM_LOCK_TIMEOUT_S = 60


def claim_jobs(jobs: list[Job], statuses: dict[str, JobStatus], study_dir: Path, executor: str) -> list[Job]:
    """The jobs this driver now owns: each folder must be as ``statuses`` saw it (nobody claimed, finished or
    re-submitted the job since), checked and overwritten under the folder's lock. Jobs lost to another driver
    are left out. A SLURM downstream job is only claimed with its upstream job (or once that one is done or
    queued), so its ``afterok`` dependency always has the upstream's SLURM id."""
    me = R.process_identity()
    won: list[Job] = []
    for job in jobs:
        d = study_dir / job.id
        d.mkdir(parents=True, exist_ok=True)
        if executor == "slurm" and job.upstream and not _upstream_claimable(job.upstream, won, study_dir):
            continue
        with FileLock(d / R.CLAIM_LOCK, timeout=CLAIM_LOCK_TIMEOUT_S):
            if signature(d) != statuses[job.id].seen:
                continue
            (d / R.FAILED).unlink(missing_ok=True)
            R.atomic_write_json(d / R.SUBMITTED, {"executor": executor, "claim": uuid.uuid4().hex, "driver": me,
                                                  "claimed_at": time.time()})
        won.append(job)
    return won


def release_claims(job_dirs: list[Path]) -> None:
    """A local or debug driver that stops running its jobs releases them: a live driver no longer holds them."""
    for d in job_dirs:
        with FileLock(d / R.CLAIM_LOCK, timeout=CLAIM_LOCK_TIMEOUT_S):
            if (sub := R.read_json(d / R.SUBMITTED)) and sub.get("driver", {}).get("pid") == R.process_identity()["pid"]:
                R.atomic_write_json(d / R.SUBMITTED, {**sub, "released": True})


def _upstream_claimable(upstream: str, won: list[Job], study_dir: Path) -> bool:
    if any(j.id == upstream for j in won):
        return True
    d = study_dir / upstream
    return R.local_job_state(d) == JobState.DONE or bool((R.read_json(d / R.SUBMITTED) or {}).get("slurm_id"))
