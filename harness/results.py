"""The results folder is the database: ``results/<study>/<job-id>/`` holds the truth about one job.

Files in a job folder:
  spec.json       the job's resolved configuration (what its identity hashes) and run context
  env.json        git commit, package versions, host, executor ids
  log.txt         the job's log
  checkpoint.pt   the latest training state (fixed name; a run that finds it resumes)
  checkpoint.prev.pt  the one before it, read if the latest is corrupt; deleted when the job is done
  encoder.pt      pre-training only: the exported encoder, loaded by downstream jobs
  metrics.json    written atomically and last: its presence means "done"
  failed.json     the error and the traceback's path, if the last attempt raised
  submitted.json  the claim on the job: which driver (pid, start time, host) submitted it, how, and when
                  (executor, SLURM job id, worker process)
  worker.json     the process that trains the job (pid, start time, host); it holds ``.run.lock`` while alive
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Container, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import CorruptResultError, StorageError, storage_error

SPEC, ENV, LOG, CHECKPOINT, ENCODER = "spec.json", "env.json", "log.txt", "checkpoint.pt", "encoder.pt"
METRICS, FAILED, SUBMITTED, TRACEBACK = "metrics.json", "failed.json", "submitted.json", "traceback.txt"
WORKER, RUN_LOCK, CLAIM_LOCK = "worker.json", ".run.lock", ".claim.lock"


class JobState(str, Enum):
    DONE = "done"
    FAILED = "failed"
    DEPENDENCY_FAILED = "dependency-failed"
    RUNNING = "running"
    PENDING = "pending"


def default_results_root() -> Path:
    return Path(os.environ.get("HARNESS_RESULTS", "results")).resolve()


def temp_beside(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise storage_error(e, path.parent) from e
    os.close(fd)
    return tmp


@contextmanager
def replacing(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` for the caller to write; synced and renamed onto ``path`` when the block
    ends, removed if it fails (an OSError, or torch's writer failing, becomes a StorageError naming ``path``).
    Readers never see a half file."""
    tmp = temp_beside(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise storage_error(e, path) from e
    except RuntimeError as e:
        Path(tmp).unlink(missing_ok=True)
        if any(mark in str(e) for mark in _TORCH_WRITER_FAILURES):
            raise _torch_write_error(e, path) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# torch's file writer reports a failed write (disk full, a file-size limit) as a RuntimeError with no errno
# ("[enforce fail at inline_container.cc:...] . unexpected pos ...", "PytorchStreamWriter failed writing ...")
_TORCH_WRITER_FAILURES = ("inline_container", "PytorchStreamWriter")


def _torch_write_error(error: RuntimeError, path: Path) -> StorageError:
    free_mib = shutil.disk_usage(Path(path).parent).free / 2**20
    return StorageError(f"could not write {path} ({free_mib:.0f} MiB free on its file system; "
                        f"torch: {str(error).splitlines()[0]})")


def atomic_write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    with replacing(path) as tmp:
        torch.save(obj, tmp)


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class MetricRow(BaseModel):
    name: str = Field(min_length=1)
    value: float | None
    split: str = "val"


class MetricsDoc(BaseModel):
    """The schema of ``metrics.json``: its metric rows and, from jobs that record it, their provenance (git,
    host, python, packages: what env.json holds of it); identity, coordinates and timings are extras."""

    model_config = ConfigDict(extra="allow")
    metrics: list[MetricRow]
    provenance: dict[str, Any] | None = None


def _plainly_valid(doc: Any) -> bool:
    """True when ``doc`` obviously matches MetricsDoc (exact types only); anything else goes to pydantic,
    which decides and words the error."""
    if type(doc) is not dict or type(rows := doc.get("metrics")) is not list \
            or type(doc.get("provenance")) not in (dict, type(None)):
        return False
    for r in rows:
        if type(r) is not dict or type(r.get("name")) is not str or not r["name"] \
                or type(r.get("value", "")) not in (float, int, type(None)) or type(r.get("split", "")) is not str:
            return False
    return True


def read_metrics(job_dir: Path) -> dict[str, Any] | None:
    """``metrics.json`` validated against its schema; None when the job has not written it.
    Raises CorruptResultError (naming the file) when it exists but cannot be trusted."""
    path = f"{job_dir}/{METRICS}"
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise CorruptResultError(path, f"not valid JSON ({msg})") from None
    if _plainly_valid(doc):
        return doc
    try:
        MetricsDoc.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise CorruptResultError(path, f"{where + ': ' if where else ''}{err['msg']}") from None
    return doc


def local_job_state(job_dir: Path, files: Container[str] | None = None) -> JobState:
    """The state the folder alone shows; RUNNING here only means "submitted and not finished".
    A corrupt ``metrics.json`` reads as FAILED (``read_metrics`` says why). ``files``: the folder's listing, when
    the caller has it (a file it lacks is not opened)."""
    def has(name: str) -> bool:
        return files is None or name in files

    try:
        if has(METRICS) and read_metrics(job_dir) is not None:
            return JobState.DONE
    except CorruptResultError:
        return JobState.FAILED
    failed = read_json(job_dir / FAILED) if has(FAILED) else None
    if failed is not None:
        return JobState.DEPENDENCY_FAILED if failed.get("dependency_failed") else JobState.FAILED
    if SUBMITTED in files if files is not None else (job_dir / SUBMITTED).exists():
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


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc); None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """What identifies a process beyond its pid, which the system reuses: its start time and host."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": process_start(pid), "host": socket.gethostname()}


def identity_alive(identity: dict[str, Any] | None) -> bool:
    """Whether the process an identity describes still runs. Another host's process cannot be checked from
    here and counts as alive; a record without a start time, or a pid now held by another process, does not."""
    if not identity or not identity.get("pid"):
        return False
    if identity.get("host") not in (None, socket.gethostname()):
        return True
    pid = int(identity["pid"])
    return identity.get("start") is not None and pid_alive(pid) and process_start(pid) == identity["start"]


def iter_job_dirs(study_dir: Path) -> Iterable[Path]:
    if not study_dir.is_dir():
        return []
    return sorted(p for p in study_dir.iterdir() if p.is_dir() and (p / SPEC).exists())
