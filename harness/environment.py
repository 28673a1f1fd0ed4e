"""Provenance of a run: git commit, package versions, host, scheduler ids."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "timm", "submitit", "numpy", "pandas", "pydantic", "pycocotools",
            "segmentation-models-pytorch", "pillow")


def git_state(path: Path | None = None) -> dict:
    cwd = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None}
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict:
    sched = {k: v for k, v in os.environ.items() if k.startswith(("SLURM_JOB", "SLURM_ARRAY", "SLURM_PROCID",
                                                                  "SLURM_NTASKS", "SUBMITIT_"))}
    return {
        "git": git_state(), "packages": package_versions(), "python": sys.version.split()[0],
        "platform": platform.platform(), "host": socket.gethostname(), "pid": os.getpid(), "scheduler": sched,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPUs the scheduler gave the job
    }


PROVENANCE_KEYS = ("git", "host", "python", "packages")


def packages_text(packages: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(packages.items()) if v)


def provenance(env: dict) -> dict:
    """What a report shows of where a result came from (commit, host, Python, packages): recorded in
    ``metrics.json`` too, so that reading the results needs no ``env.json`` per job."""
    return {k: env.get(k) for k in PROVENANCE_KEYS}
