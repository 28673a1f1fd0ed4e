"""The SLURM executor: pre-training jobs go as job arrays, downstream jobs as arrays that depend (``afterok``)
on their pre-training job, so the driver submits a whole study and exits. ``kill-on-invalid-dep`` makes a
downstream job whose pre-training failed end as cancelled (reason ``Dependency``) instead of waiting forever.

Jobs run the driver's python (``sys.executable``, or the profile's ``python``) on the driver's copy of the
code: the submitit pickle refers to ``harness`` modules, so every job puts the directory that holds the
driver's ``harness`` package first on ``PYTHONPATH``. The cache and data roots are exported as absolute paths,
so a job sees the very files the plan was made from, whatever the site's ``--export`` policy.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import harness
from harness import results as R
from harness.errors import ConfigError
from harness.job import JobRunner, JobSpec
from harness.launch.profiles import ClusterProfile
from harness.spec import Resources

CODE_ROOT = Path(harness.__file__).resolve().parent.parent


def job_environment() -> dict[str, str]:
    """Variables every job gets, as the driver sees them, with paths made absolute."""
    from harness.data.roots import cache_dir, data_roots_file

    env = {"HARNESS_CACHE": str(cache_dir().resolve())}
    if (roots := data_roots_file()) is not None:
        env["HARNESS_DATA_ROOTS"] = str(roots.resolve())
    for var, value in sorted(os.environ.items()):
        if var.startswith("HARNESS_DATA_") and var != "HARNESS_DATA_ROOTS":
            env[var] = str(Path(value).expanduser().resolve())
    return env


def setup_lines(profile: ClusterProfile) -> list[str]:
    """Shell lines that run in the job before python: the site's setup, then the harness environment."""
    lines = list(profile.setup)
    lines.append(f"export PYTHONPATH={shlex.quote(str(CODE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}")
    lines.append("export HARNESS_PROGRESS=${HARNESS_PROGRESS:-0}")  # no progress bars in log files
    for var, value in {**job_environment(), **profile.env}.items():
        lines.append(f"export {var}={shlex.quote(value)}")
    return lines


def slurm_parameters(resources: Resources, profile: ClusterProfile) -> dict[str, Any]:
    """submitit parameters for one job of a stage, from the study's resources and the cluster profile."""
    gpus = resources.gpus_per_node
    if profile.gpus_per_node is not None and gpus > profile.gpus_per_node:
        raise ConfigError(f"cluster profile {profile.name}", "gpus_per_node",
                          f"the study asks for {gpus} GPUs per node; nodes of this cluster have {profile.gpus_per_node} "
                          "(ask for more nodes instead)")
    timeout = resources.timeout_min
    if profile.max_time_min:
        timeout = min(timeout, profile.max_time_min)
    cpus, mem = resources.cpus_per_task, resources.mem_gb
    if gpus and profile.cpus_per_gpu:
        cpus = max(1, profile.cpus_per_gpu * gpus // resources.tasks_per_node)
    if gpus and profile.mem_gb_per_gpu:
        mem = min(mem, profile.mem_gb_per_gpu * gpus)
    params: dict[str, Any] = {
        "timeout_min": timeout,
        "nodes": resources.nodes,
        "tasks_per_node": resources.tasks_per_node,
        "cpus_per_task": cpus,
        "mem_gb": mem,
    }
    if gpus:
        params["gpus_per_node"] = gpus
    optional = {"slurm_partition": profile.partition, "slurm_account": profile.account, "slurm_qos": profile.qos,
                "slurm_constraint": profile.constraint, "slurm_array_parallelism": profile.max_array_parallelism,
                "slurm_signal_delay_s": profile.signal_delay_s}
    params.update({k: v for k, v in optional.items() if v is not None})
    params["slurm_setup"] = setup_lines(profile)
    return params


def chunks(items: list, size: int) -> list[list]:
    """``items`` in arrays of at most ``size`` (the cluster's MaxArraySize)."""
    return [items[i:i + size] for i in range(0, len(items), size)] if size > 0 else [items]


def _record(spec: JobSpec, job) -> None:
    claim = R.read_json(spec.job_dir / R.SUBMITTED) or {}  # this driver's claim (token, identity) stays
    R.atomic_write_json(spec.job_dir / R.SUBMITTED, {
        **claim, "executor": "slurm", "slurm_id": job.job_id, "submitted_at": time.time(),
        "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)})


def submission_folder(base: Path) -> Path:
    """A fresh submitit folder per submission: SLURM job ids restart on a re-created cluster, and a folder
    reused with ``%j`` would take an old job's result file for a new one."""
    return base / time.strftime("%Y%m%d-%H%M%S") / "%j"


def submit_slurm(pre_specs: list[JobSpec], down_specs: list[JobSpec], resources: dict[str, Resources],
                 profile: ClusterProfile, upstream_slurm_ids: dict[str, str], folder: Path,
                 dry_run: bool = False, job_resources: dict[str, Resources] | None = None) -> list[dict[str, Any]]:
    """Submit and return one record per submission (array): its jobs, parameters and dependency.

    ``job_resources``: a job's own resources where they differ from its stage's (per-method resources); jobs
    that ask for different resources go in different arrays.

    ``upstream_slurm_ids`` maps pre-training jobs already in the queue to their SLURM ids, so that downstream
    jobs of a pre-training job still running depend on it instead of being submitted twice.
    """
    import submitit

    records: list[dict[str, Any]] = []
    ids = dict(upstream_slurm_ids)
    python = profile.python or shlex.quote(sys.executable)
    executor = None
    if not dry_run:
        executor = submitit.AutoExecutor(folder=submission_folder(folder), cluster="slurm", slurm_python=python)

    def submit_group(specs: list[JobSpec], stage: str, dependency: str | None) -> None:
        by_resources: dict[str, list[JobSpec]] = defaultdict(list)
        for s in specs:
            by_resources[(job_resources or {}).get(s.job_id, resources[stage]).model_dump_json()].append(s)
        for key, group in by_resources.items():
            submit_array(group, stage, dependency, Resources.model_validate_json(key))

    def submit_array(specs: list[JobSpec], stage: str, dependency: str | None, res: Resources) -> None:
        params = slurm_parameters(res, profile)
        # always set: the executor keeps parameters from one update to the next
        params["slurm_additional_parameters"] = {"dependency": dependency, "kill-on-invalid-dep": "yes"} if dependency else {}
        for chunk in chunks(specs, profile.max_array_size):
            params["name"] = f"{chunk[0].study}-{stage}"
            record = {"stage": stage, "jobs": [s.job_id for s in chunk], "dependency": dependency,
                      "python": python, "parameters": dict(params), "slurm_ids": []}
            if not dry_run:
                executor.update_parameters(**params)
                with executor.batch():
                    jobs = [executor.submit(JobRunner(), s) for s in chunk]
                for s, j in zip(chunk, jobs):
                    _record(s, j)
                    ids[s.job_id] = j.job_id
                record["slurm_ids"] = [j.job_id for j in jobs]
                record["folder"] = str(executor.folder)
            records.append(record)

    if pre_specs:
        submit_group(pre_specs, "pretrain", None)
    by_upstream: dict[str | None, list[JobSpec]] = defaultdict(list)
    for s in down_specs:
        by_upstream[s.upstream].append(s)
    planned_pre = {s.job_id for s in pre_specs}
    for upstream, specs in by_upstream.items():
        if dry_run and upstream in planned_pre:
            dep = f"afterok:<slurm id of {upstream}>"
        else:
            dep = f"afterok:{ids[upstream]}" if upstream in ids else None
        submit_group(specs, "downstream", dep)
    return records


def worker_probe() -> dict[str, Any]:
    """What a job sees: run it on the cluster to check that jobs import the driver's code and get its
    environment (``submitit`` executor with ``slurm_parameters``; see docs/slurm.md)."""
    return {"harness": str(Path(harness.__file__).resolve()), "python": sys.executable, "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("HARNESS_")}}
