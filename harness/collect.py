"""Collect: every complete job folder of a study -> one tidy pandas table (one row per metric).

Only ``metrics.json`` is read (written last and atomically), so a running or crashed job never contributes a
partial row; one that does not match its schema is skipped with a warning naming it. Saved as ``results/<study>/collected.csv`` and ``collected.parquet``.
Each row carries its job's provenance (commit, host, Python, packages) where metrics.json records it; results
written before it did have none there (a report then reads their env.json). collected.csv leaves it out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from harness import results as R
from harness.environment import packages_text
from harness.errors import CorruptResultError

COORDS = ["method", "pretrain_dataset", "fraction", "epochs", "seed", "task", "task_dataset"]
PROVENANCE = ["git_commit", "git_dirty", "host", "python", "packages"]
COLUMNS = ["study", "scale", "stage", "job_id", "upstream", *COORDS, "metric", "split", "value", "updates",
           "wall_time_s", *PROVENANCE]
CSV_LEAVES_OUT = PROVENANCE  # the same on most rows, and long: in collected.parquet (which report reads)
JOB_KEYS = ["study", "scale", "stage", "job_id", "upstream", *COORDS, "updates", "wall_time_s"]


def _job_names(study_dir: Path, only: set[str] | None) -> list[str]:
    """The job folders' names, sorted, in one listing (no per-folder check: metrics.json is written last)."""
    if not study_dir.is_dir():
        return []
    with os.scandir(study_dir) as entries:
        return sorted(e.name for e in entries if (only is None or e.name in only) and e.is_dir())


def _provenance(doc: dict, texts: dict[tuple, str]) -> tuple:
    """The job's provenance columns; all None for a metrics.json written before jobs recorded it. ``texts``:
    the packages' text by their versions (a study's jobs share a few sets of versions)."""
    p = doc.get("provenance")
    if not p:
        return (None,) * len(PROVENANCE)
    git = p.get("git") or {}
    versions = tuple((p.get("packages") or {}).items())
    if (text := texts.get(versions)) is None:
        text = texts[versions] = packages_text(dict(versions))
    return git.get("commit"), git.get("dirty"), p.get("host"), p.get("python"), text


def _rows(jobs: list[tuple], metrics: list[tuple]) -> pd.DataFrame:
    """One row per metric: the job's columns repeated for each of its metrics (built per column, not per row)."""
    if not metrics:
        return pd.DataFrame(columns=COLUMNS)
    per_job = pd.DataFrame.from_records(jobs, columns=[*JOB_KEYS, *PROVENANCE])
    job_of, names, splits, values = zip(*metrics)
    frame = per_job.take(list(job_of)).reset_index(drop=True)
    frame = frame.assign(metric=list(names), split=list(splits), value=list(values))
    return frame[COLUMNS]


def collect_frame(study_dir: Path, only: set[str] | None = None) -> pd.DataFrame:
    """Rows of every complete job, or of the jobs in ``only`` (the current plan: folders of jobs that a changed
    study no longer has stay on disk, and must not mix into its tables)."""
    jobs, metrics, texts = [], [], {}
    for name in _job_names(study_dir, only):
        try:
            doc = R.read_metrics(study_dir / name)
        except CorruptResultError as e:  # reported, never silently dropped nor half-read
            print(f"warning: skipping {e} (re-run the job with --retry-failed)", file=sys.stderr)
            continue
        if doc is None:
            continue
        rows = doc.get("metrics", [])
        if rows:
            index = len(jobs)
            jobs.append((*(doc.get(k) for k in JOB_KEYS), *_provenance(doc, texts)))
            metrics += [(index, m["name"], m.get("split", "val"), m["value"]) for m in rows]
    frame = _rows(jobs, metrics)
    frame["fraction"] = pd.to_numeric(frame["fraction"], errors="coerce")
    frame["epochs"] = pd.to_numeric(frame["epochs"], errors="coerce").astype("Int64")
    frame["value"] = pd.to_numeric(frame["value"])
    return frame


def collect(study_dir: Path, only: set[str] | None = None, scale: str | None = None) -> pd.DataFrame:
    """Collect and store the table. ``scale``: the scale of the plan ``only`` comes from; its rows are labelled
    with it, because a job's identity leaves the scale out: a job another scale ran first (random init, or the
    same cell at the same settings) is reused by this plan and belongs to its report."""
    frame = collect_frame(study_dir, only)
    if scale is not None:
        frame["scale"] = scale
    study_dir.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=CSV_LEAVES_OUT).to_csv(study_dir / "collected.csv", index=False)
    frame.to_parquet(study_dir / "collected.parquet", index=False)
    return frame


def load_collected(study_dir: Path) -> pd.DataFrame:
    """The stored table (no job folder is read); collects first if it was never written."""
    path = study_dir / "collected.parquet"
    return pd.read_parquet(path) if path.exists() else collect(study_dir)
