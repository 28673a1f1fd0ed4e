"""The SLURM executor: pre-training jobs go as job arrays, downstream jobs as arrays that depend (``afterok``)
on their pre-training job, so the driver submits a whole study and exits. ``kill_on_invalid_dep`` makes a
downstream job whose pre-training failed end as cancelled (DependencyNeverSatisfied) instead of waiting."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import results as R
from harness.job import JobRunner, JobSpec
from harness.launch.profiles import ClusterProfile
from harness.spec import Resources


def slurm_parameters(resources: Resources, profile: ClusterProfile) -> dict[str, Any]:
    """submitit parameters for one job of a stage, from the study's resources and the cluster profile."""
    params: dict[str, Any] = {
        "timeout_min": min(resources.timeout_min, profile.max_time_min) if profile.max_time_min else resources.timeout_min,
        "nodes": resources.nodes,
        "tasks_per_node": resources.tasks_per_node,
        "cpus_per_task": resources.cpus_per_task,
        "mem_gb": resources.mem_gb,
        "slurm_partition": profile.partition,
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
        if profile.cpus_per_gpu:
            params["cpus_per_task"] = max(1, profile.cpus_per_gpu * resources.gpus_per_node // resources.tasks_per_node)
    additional: dict[str, Any] = {}
    if profile.account:
        params["slurm_account"] = profile.account
    if profile.qos:
        params["slurm_qos"] = profile.qos
    if profile.constraint:
        params["slurm_constraint"] = profile.constraint
    if profile.max_array_parallelism:
        params["slurm_array_parallelism"] = profile.max_array_parallelism
    if additional:
        params["slurm_additional_parameters"] = additional
    return params


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)] if size > 0 else [items]


def _record(spec: JobSpec, job) -> None:
    R.atomic_write_json(spec.job_dir / R.SUBMITTED, {
        "executor": "slurm", "slurm_id": job.job_id, "submitted_at": time.time(),
        "stdout": str(job.paths.stdout).replace("%j", job.job_id),
        "stderr": str(job.paths.stderr).replace("%j", job.job_id)})


def submit_slurm(pre_specs: list[JobSpec], down_specs: list[JobSpec], resources: dict[str, Resources],
                 profile: ClusterProfile, upstream_slurm_ids: dict[str, str], folder: Path,
                 dry_run: bool = False) -> list[dict[str, Any]]:
    """Submit and return one record per submission (array): its jobs, parameters and dependency.

    ``upstream_slurm_ids`` maps pre-training jobs already in the queue to their SLURM ids, so that downstream
    jobs of a pre-training job still running depend on it instead of being submitted twice.
    """
    import submitit

    records: list[dict[str, Any]] = []
    ids = dict(upstream_slurm_ids)
    executor = None if dry_run else submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")

    def submit_group(specs: list[JobSpec], stage: str, dependency: str | None) -> None:
        params = slurm_parameters(resources[stage], profile)
        if dependency:
            params.setdefault("slurm_additional_parameters", {})
            params["slurm_additional_parameters"] = {**params["slurm_additional_parameters"],
                                                     "dependency": dependency, "kill-on-invalid-dep": "yes"}
        for chunk in _chunks(specs, profile.max_array_size):
            record = {"stage": stage, "jobs": [s.job_id for s in chunk], "dependency": dependency,
                      "parameters": params, "slurm_ids": []}
            if not dry_run:
                executor.update_parameters(**params, name=f"{chunk[0].study}-{stage}")
                with executor.batch():
                    jobs = [executor.submit(JobRunner(), s) for s in chunk]
                for s, j in zip(chunk, jobs):
                    _record(s, j)
                    ids[s.job_id] = j.job_id
                record["slurm_ids"] = [j.job_id for j in jobs]
            records.append(record)

    if pre_specs:
        submit_group(pre_specs, "pretrain", None)
    by_upstream: dict[str | None, list[JobSpec]] = defaultdict(list)
    for s in down_specs:
        by_upstream[s.upstream].append(s)
    for upstream, specs in by_upstream.items():
        dep = f"afterok:{ids[upstream]}" if upstream in ids else None
        if dry_run and upstream in {s.job_id for s in pre_specs}:
            dep = f"afterok:<slurm id of {upstream}>"
        submit_group(specs, "downstream", dep)
    return records
