"""Training checkpoints on disk: where they live, how they are written and how a resume reads them.

A job folder keeps the latest two checkpoints: ``checkpoint.pt`` and the one before it, ``checkpoint.prev.pt``.
A new one is written to a temporary file and synced before two renames rotate it in, so a crash never leaves
a half-written ``checkpoint.pt``. Reading uses ``torch.load(weights_only=True)``: a checkpoint holds tensors and
plain data only (RNG states included), so a planted file cannot run code. A latest checkpoint that cannot be
read (truncated, corrupt) is reported and the previous one is used instead. Once the job is done the previous
one has no use, and at paper scale it is a gigabyte or more: ``discard_previous`` deletes it.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.results import replacing

log = logging.getLogger("harness.checkpoint")

PREVIOUS_SUFFIX = ".prev"


class CheckpointError(HarnessError):
    """No checkpoint of a job can be read."""


def previous_path(path: Path) -> Path:
    """``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    return path.with_name(f"{path.stem}{PREVIOUS_SUFFIX}{path.suffix}")


def discard_previous(path: Path) -> None:
    """Delete the fallback of a finished job's checkpoint (the latest, complete one stays)."""
    previous_path(path).unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain data (what ``weights_only`` loading accepts)."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` as the latest checkpoint; the one it replaces becomes the previous one."""
    with replacing(path) as tmp:
        torch.save(state, tmp)
        if path.exists():  # a crash before the rename onto ``path`` leaves the previous one, which ``load`` reads
            os.replace(path, previous_path(path))


def _read(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load(path: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint, or None when the job has none. A latest one that cannot be read is
    logged and the previous one is used; when neither can be read, CheckpointError names both files."""
    candidates = [p for p in (path, previous_path(path)) if p.exists()]
    problems = []
    for candidate in candidates:
        try:
            state = _read(candidate)
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ...
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            problems.append(f"{candidate}: {reason}")
            log.warning("checkpoint %s cannot be read (%s)", candidate, reason)
            continue
        if problems:
            log.warning("resuming from the previous checkpoint %s instead", candidate)
        return state
    if problems:
        raise CheckpointError("no checkpoint can be read (" + "; ".join(problems) + "): delete "
                              + " and ".join(str(p) for p in candidates) + " to start the job over")
    return None
