"""Where results came from: the jobs of a collected frame and each job's provenance (git commit, packages,
host), from the collected frame where metrics.json recorded it, else from the job's env.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.collect import PROVENANCE
from harness.environment import packages_text

ENV_COLUMNS = ["job_id", *PROVENANCE]
_STAGE_RANK = {"pretrain": 0, "downstream": 1}  # pre-training jobs first, then by job id
JOB_COLUMNS = ["job_id", "stage", "method", "pretrain_dataset", "fraction", "epochs", "seed", "task", "task_dataset",
               "upstream", "updates", "wall_time_s"]


def jobs_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per job present in the frame (pre-training jobs first), with its grid coordinates; a pre-training
    job that reports no metric (random init) is listed through the downstream jobs that name it as upstream."""
    jobs = frame.drop_duplicates("job_id")[JOB_COLUMNS]
    ids = set(jobs["job_id"].tolist())
    silent_upstream = [s == "downstream" and isinstance(u, str) and u not in ids
                       for s, u in zip(jobs["stage"].tolist(), jobs["upstream"].tolist())]
    down = jobs[silent_upstream]
    if len(down):
        silent = down.drop_duplicates("upstream").assign(job_id=lambda d: d["upstream"], stage="pretrain", task=None,
                                                          task_dataset=None, upstream=None, updates=None, wall_time_s=None)
        jobs = pd.concat([jobs, silent[JOB_COLUMNS]], ignore_index=True)
    stages, job_ids = jobs["stage"].tolist(), jobs["job_id"].tolist()
    return jobs.iloc[sorted(range(len(jobs)), key=lambda i: (_STAGE_RANK.get(stages[i], 2), job_ids[i]))]


def read_env(study_dir: Path, job_id: str) -> dict:
    try:
        with open(f"{study_dir}/{job_id}/env.json", "rb") as f:
            return json.loads(f.read())
    except (OSError, json.JSONDecodeError):
        return {}


def _env_record(study_dir: Path, job_id: str) -> tuple:
    env = read_env(study_dir, job_id)
    git = env.get("git") or {}
    return (job_id, git.get("commit"), git.get("dirty"), env.get("host"), env.get("python"),
            packages_text(env.get("packages") or {}))


def _recorded(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The provenance the collected frame holds, one row per job; jobs whose metrics.json has none (written
    before jobs recorded it: no Python version) are left out."""
    if frame is None or not set(PROVENANCE) <= set(frame.columns):
        return pd.DataFrame(columns=ENV_COLUMNS)
    jobs = frame.drop_duplicates("job_id")
    return jobs.loc[jobs["python"].notna(), ENV_COLUMNS]


def environments(study_dir: Path, job_ids, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each job's commit, dirty flag, host, Python and packages, in the order of ``job_ids``: from ``frame`` (the
    collected results) where it has them, from the job's env.json for the others."""
    ids = list(job_ids)
    recorded = _recorded(frame)
    known = set(recorded["job_id"].tolist())  # (iterating an Arrow-backed column is slow)
    read = pd.DataFrame.from_records([_env_record(study_dir, j) for j in ids if j not in known], columns=ENV_COLUMNS)
    parts = [p.astype(object) for p in (recorded, read) if len(p)]
    if not parts:
        return pd.DataFrame(columns=ENV_COLUMNS)
    envs = pd.concat(parts, ignore_index=True).set_index("job_id")
    return envs.reindex(ids).rename_axis("job_id").reset_index()


def commit_label(row) -> str:
    commit = row["git_commit"]
    if not isinstance(commit, str) or not commit:
        return "unknown"
    dirty = row["git_dirty"]
    return commit[:12] + ("+dirty" if isinstance(dirty, (bool, np.bool_)) and dirty else "")


def commit_labels(envs: pd.DataFrame) -> list[str]:
    return [commit_label({"git_commit": c, "git_dirty": d}) for c, d in zip(envs["git_commit"].tolist(), envs["git_dirty"].tolist())]


def commits(envs: pd.DataFrame) -> dict[str, str]:
    return dict(zip(envs["job_id"].tolist(), commit_labels(envs)))


def read_spec_params(study_dir: Path, job_id: str) -> dict:
    try:
        spec = json.loads((study_dir / job_id / "spec.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return (spec.get("config") or {}).get("params") or {}


def planned_params(study_dir: Path, planned: dict | None = None) -> dict[str, dict]:
    """Each job's parameters from the plan the study was launched with (plan.json): one file instead of a
    spec.json per job; a job's identity hashes its configuration, so a job id names the same parameters in both."""
    from harness.plan import load_planned_jobs

    planned = load_planned_jobs(study_dir) if planned is None else planned
    return {job_id: p.params for job_id, p in planned.items()}


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def varying_params(study_dir: Path, jobs: pd.DataFrame, planned: dict | None = None) -> pd.Series:
    """Per job, the method/task parameters (from spec.json) that differ between jobs of the same stage and kind,
    e.g. the longer detection schedule of random init; empty where nothing differs or no spec.json is there."""
    plan_params = planned_params(study_dir, planned)
    params = {j: plan_params[j] if j in plan_params else read_spec_params(study_dir, j) for j in jobs["job_id"].tolist()}
    kind = jobs["method"].where(jobs["stage"] == "pretrain", jobs["task"]).fillna("")
    out = pd.Series("", index=jobs.index, dtype=object)
    for _, group in jobs.groupby([jobs["stage"], kind]):
        dicts = [params[j] for j in group["job_id"].tolist()]
        by_object = {id(d): d for d in dicts}.values()  # jobs of one plan share their parameters' dict
        distinct = list({_key(d): d for d in by_object}.values())  # few per group
        keys = sorted({k for d in distinct for k in d})
        varying = [k for k in keys if len({_key(d.get(k)) for d in distinct}) > 1]
        if varying:
            out[group.index] = [", ".join(f"{k}={d.get(k)}" for k in varying) for d in dicts]
    return out
