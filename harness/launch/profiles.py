"""Cluster profiles: a site's SLURM names and limits in one YAML file (``clusters/<name>.yaml``), chosen by
``--cluster NAME`` or ``$HARNESS_CLUSTER`` (a name or a path). A study's per-stage resources are mapped onto
submitit's parameters with them; nothing cluster-specific is hard-coded."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from harness import yamlfile
from harness.errors import ConfigError
from harness.registry import did_you_mean

PROFILE_DIR = Path("clusters")


class ClusterProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int | None = None
    cpus_per_gpu: int | None = None
    mem_gb_per_gpu: float | None = None
    max_time_min: int | None = None
    max_array_size: int = 1000
    max_array_parallelism: int | None = None
    submitit_folder: str | None = None
    results_root: str | None = None
    python: str | None = None  # the worker's python command (default: the driver's interpreter)
    setup: list[str] = []  # shell lines run in the job before python starts (module load ..., conda activate ...)
    env: dict[str, str] = {}  # extra variables exported to every job (e.g. HARNESS_DATA_IMAGENET)
    signal_delay_s: int | None = None  # USR2 this long before the time limit (submitit's default: 90)


def load_profile(name_or_path: str | None = None) -> ClusterProfile:
    choice = name_or_path or os.environ.get("HARNESS_CLUSTER") or "ci"
    path = Path(choice) if choice.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{choice}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")) if PROFILE_DIR.is_dir() else []
        guess = did_you_mean(choice, known)
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ConfigError(str(path), "", f"no cluster profile {choice!r}{hint} (known: {', '.join(known) or 'none'})")
    data = yamlfile.loads(os.path.expandvars(path.read_text())) or {}
    try:
        return ClusterProfile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(str(path), key, err["msg"], data.get(err["loc"][0]) if err["loc"] else None) from None
