"""Training curves of one job: scalars to ``history.jsonl`` in the job folder and to TensorBoard event files.

Rows are written every ``HARNESS_LOG_EVERY`` updates (default 10) and at the last update, with each loss
term, the learning rate, the gradient norm and images/s; evaluations add rows of ``kind: eval``. The event
files lie in the job folder, so ``tensorboard --logdir results/<study>`` shows every job as a run named by its
id, which starts with its study cell (``pre-mae-in1k-f0.10-e300-s0-…``). Logging reads values the step computed
anyway: it changes no result.

The engine asks ``active()`` for the running job's recorder; outside a job it gets one that records nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HISTORY = "history.jsonl"


def log_every() -> int:
    return max(1, int(os.environ.get("HARNESS_LOG_EVERY", "10")))


class Curves:
    """Writes one job's scalars; ``train_step`` keeps its own interval and throughput clock."""

    def __init__(self, job_dir: Path, tb_dir: Path | None, every: int | None = None):
        self.history = job_dir / HISTORY
        self.every = every or log_every()
        self.tb_dir = tb_dir
        self._writer = None
        self._clock = (time.time(), 0)  # (time, images) at the last training row
        self.position = (0, 0)  # (step, total) of the last row

    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def train_step(self, step: int, total: int, images: int, scalars: dict[str, float]) -> None:
        """Called after every update with the images it saw; writes a row when one is due."""
        t0, seen = self._clock
        seen += images
        if not self.due(step, total):
            self._clock = (t0, seen)
            return
        now = time.time()
        self._clock = (now, 0)
        self.write("train", step, total, {**scalars, "images_per_s": round(seen / max(now - t0, 1e-9), 2)})

    def eval(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.write("eval", step, total, metrics)

    def eval_rows(self, rows: list[dict[str, Any]]) -> None:
        """A job's final metric rows (``name``, ``value``, ``split``), at the last update it trained."""
        metrics = {}
        for r in rows:
            if not isinstance(r.get("value"), (int, float)):
                continue
            split = r.get("split")
            metrics[r["name"] if split in (None, "val") else f"{r['name']}_{split}"] = r["value"]
        if metrics:
            self.eval(*self.position, metrics)

    def write(self, kind: str, step: int, total: int, scalars: dict[str, float]) -> None:
        values = {k: float(v) for k, v in scalars.items()}
        self.position = (step, total)
        row = {"kind": kind, "step": step, "total": total, "time": round(time.time(), 3), **values}
        with open(self.history, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb_dir is not None:
            writer = self._tensorboard()
            for k, v in values.items():
                writer.add_scalar(f"{kind}/{k}", v, step)
            writer.flush()

    def _tensorboard(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.tb_dir))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _NoCurves(Curves):
    def __init__(self):
        self.every, self.position = 1 << 62, (0, 0)

    def due(self, step: int, total: int) -> bool:
        return False

    def train_step(self, step: int, total: int, images: int, scalars: dict[str, float]) -> None:
        return None

    def write(self, kind: str, step: int, total: int, scalars: dict[str, float]) -> None:
        return None


_ACTIVE: list[Curves] = []


def active() -> Curves:
    """The running job's recorder, or one that records nothing."""
    return _ACTIVE[-1] if _ACTIVE else _NoCurves()


@contextmanager
def recording(job_dir: Path, tb_dir: Path | None) -> Iterator[Curves]:
    curves = Curves(job_dir, tb_dir)
    _ACTIVE.append(curves)
    try:
        yield curves
    finally:
        _ACTIVE.remove(curves)
        curves.close()


def read_history(job_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``history.jsonl``; a run resumed from a checkpoint repeats some steps: the later row wins."""
    path = job_dir / HISTORY
    if not path.exists():
        return []
    rows: dict[tuple[str, int], dict] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        rows[(row["kind"], row["step"])] = row
    return sorted(rows.values(), key=lambda r: (r["step"], r["kind"] == "eval"))


def _tail_rows(job_dir: Path, nbytes: int = 65536) -> list[dict[str, Any]]:
    """The rows in the last ``nbytes`` of ``history.jsonl`` (cheap on long histories); a half-written line is skipped."""
    path = job_dir / HISTORY
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - nbytes))
        lines = f.read().decode(errors="replace").splitlines()
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in rows if isinstance(r, dict) and "kind" in r]


def last_row(job_dir: Path, kind: str = "train") -> dict[str, Any] | None:
    """The newest row of a kind."""
    return next((r for r in reversed(_tail_rows(job_dir)) if r["kind"] == kind), None)


def progress(job_dir: Path, now: float | None = None) -> dict[str, Any] | None:
    """``{step, total, loss, eta_s}`` of a running job from its newest training rows; ``eta_s`` is None until two
    rows of the current run (since the last resume) give a rate."""
    rows = [r for r in _tail_rows(job_dir) if r["kind"] == "train"]
    if not rows:
        return None
    last = rows[-1]
    first = last
    for r in reversed(rows[:-1]):  # back to the start of this run: steps and times increase
        if r.get("total") != last.get("total") or r["step"] >= first["step"] or r["time"] >= first["time"]:
            break
        first = r
    eta = None
    if first is not last and last["time"] > first["time"]:
        rate = (last["step"] - first["step"]) / (last["time"] - first["time"])
        eta = max(0.0, (last["total"] - last["step"]) / rate - ((now or time.time()) - last["time"]))
    return {"step": last["step"], "total": last["total"], "loss": last.get("loss"), "eta_s": eta}


def progress_text(job_dir: Path) -> str:
    """``update 120/400, loss 2.310, ETA 3m10s`` (empty when the job has written no row yet)."""
    p = progress(job_dir)
    if p is None:
        return ""
    text = f"update {p['step']}/{p['total']}"
    if p["loss"] is not None:
        text += f", loss {p['loss']:.4g}"
    if p["eta_s"] is not None:
        minutes, seconds = divmod(int(round(p["eta_s"])), 60)
        hours, minutes = divmod(minutes, 60)
        text += ", ETA " + (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s")
    return text
