"""The results folder is the database: ``results/<study>/<job-id>/`` holds the truth about one job.

Files in a job folder:
  spec.json       the job's resolved configuration (what its identity hashes) and run context
  env.json        git commit, package versions, host, executor ids
  log.txt         the job's log
  checkpoint.pt   the latest training state (fixed name; a run that finds it resumes)
  encoder.pt      pre-training only: the exported encoder, loaded by downstream jobs
  metrics.json    written atomically and last: its presence means "done"
  failed.json     the error and the traceback's path, if the last attempt raised
  submitted.json  how and when the job was last submitted (executor, SLURM job id, pid)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any

SPEC, ENV, LOG, CHECKPOINT, ENCODER = "spec.json", "env.json", "log.txt", "checkpoint.pt", "encoder.pt"
METRICS, FAILED, SUBMITTED, TRACEBACK = "metrics.json", "failed.json", "submitted.json", "traceback.txt"


class JobState(str, Enum):
    DONE = "done"
    FAILED = "failed"
    DEPENDENCY_FAILED = "dependency-failed"
    RUNNING = "running"
    PENDING = "pending"


def default_results_root() -> Path:
    return Path(os.environ.get("HARNESS_RESULTS", "results")).resolve()


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def local_job_state(job_dir: Path) -> JobState:
    """The state the folder alone shows; RUNNING here only means "submitted and not finished"."""
    if (job_dir / METRICS).exists() and read_json(job_dir / METRICS) is not None:
        return JobState.DONE
    failed = read_json(job_dir / FAILED)
    if failed is not None:
        return JobState.DEPENDENCY_FAILED if failed.get("dependency_failed") else JobState.FAILED
    if (job_dir / SUBMITTED).exists():
        return JobState.RUNNING
    return JobState.PENDING


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        status = Path(f"/proc/{pid}/status").read_text()
        return "\nState:\tZ" not in status
    except OSError:
        return True


def iter_job_dirs(study_dir: Path) -> Iterable[Path]:
    if not study_dir.is_dir():
        return []
    return sorted(p for p in study_dir.iterdir() if p.is_dir() and (p / SPEC).exists())
