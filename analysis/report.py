"""``harness report``: tables, figures, the paper's claims and one HTML page per study, from stored results alone.

Outputs under ``results/<study>/``: ``tables/`` (Markdown, LaTeX, CSV, provenance CSV), ``figures/`` (PNG, PDF),
``claims.{md,csv,json}`` and ``report.html``. A frame holding several scales is never pooled: each scale then
gets its own ``by-scale/<scale>/`` folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.claims import evaluate_study, write_claims
from analysis.curves import cell_title, job_states, loss_curve_figures
from analysis.figures import write_figures
from analysis.html import PER_JOB_ENV, write_page
from analysis.provenance import commits, environments, jobs_frame, varying_params
from analysis.tables import study_tables, write_tables
from harness import cycles
from harness.collect import PROVENANCE
from harness.plan import load_planned_jobs

ALL = ("tables", "figures", "claims", "html")
JOBS_CSV = "jobs.csv"


def write_report(frame: pd.DataFrame, study_dir: Path, scale: str | None = None,
                 what: tuple[str, ...] | None = None) -> list[Path]:
    with cycles.paused():  # rows, frames and tables hold no cycle; figures are collected apart
        return _write_report(frame, study_dir, scale, ALL if what is None else what)


def _write_report(frame: pd.DataFrame, study_dir: Path, scale: str | None, what: tuple[str, ...]) -> list[Path]:
    if scale is not None:
        return _write_one(frame[frame["scale"] == scale], study_dir, study_dir, scale, what)
    scales = sorted(frame["scale"].dropna().unique())
    if len(scales) <= 1:
        return _write_one(frame, study_dir, study_dir, scales[0] if scales else "-", what)
    written: list[Path] = []
    for s in scales:
        written += _write_one(frame[frame["scale"] == s], study_dir, study_dir / "by-scale" / s, s, what)
    return written


def seeds_per_cell(frame: pd.DataFrame) -> pd.Series:
    """How many seeds each cell (method x data x fraction x epochs, per task and metric) averages."""
    if frame.empty:
        return pd.Series(dtype=int)
    keys = ["method", "pretrain_dataset", "fraction", "epochs", "task", "task_dataset", "metric"]
    return frame.groupby(keys, dropna=False)["seed"].nunique()


def _plan(jobs: pd.DataFrame, study_dir: Path, planned: dict) -> pd.DataFrame:
    return jobs.assign(params_that_differ=varying_params(study_dir, jobs, planned))


def write_jobs_csv(path: Path, states: pd.DataFrame, jobs: pd.DataFrame, envs: pd.DataFrame) -> Path:
    """Every job: its state and files, and for a job with results its parameters that differ and provenance."""
    extra = jobs[["job_id", "upstream", "updates", "wall_time_s", "params_that_differ"]].merge(
        envs[PER_JOB_ENV], on="job_id", how="left")
    states.merge(extra, on="job_id", how="left").to_csv(path, index=False)
    return path


def _curve_anchors(states: pd.DataFrame, curves: list[tuple[str, Path]]) -> dict[str, str]:
    """Each job's link to the curves of its study cell."""
    stems = {title: png.stem for title, png in curves}
    if not stems:
        return {}
    return {r["job_id"]: stems[title] for r in states.to_dict("records") if isinstance(r["method"], str)
            and (title := cell_title(r)) in stems}


def _write_one(frame: pd.DataFrame, study_dir: Path, out: Path, scale: str, what: tuple[str, ...]) -> list[Path]:
    study = str(frame["study"].iloc[0]) if len(frame) else study_dir.name
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_frame(frame)
    envs = environments(study_dir, jobs["job_id"], frame)
    frame = frame.drop(columns=PROVENANCE, errors="ignore")  # every later selection copies fewer columns
    job_commits = commits(envs)
    written: list[Path] = []
    built = study_tables(frame) if {"tables", "html"} & set(what) else []
    if "tables" in what:
        written += write_tables(frame, out / "tables", job_commits, built)
    if "figures" in what:
        with cycles.collecting_new_only():
            written += write_figures(frame, out / "figures")
    results = evaluate_study(frame, study) if {"claims", "html"} & set(what) else []
    if "claims" in what:
        written += write_claims(results, out)
    if "html" in what:
        tables = []
        for t in built:
            files = {ext: f"tables/{t.stem}.{ext}" for ext in ("md", "tex", "csv")}
            files["provenance"] = f"tables/{t.stem}.provenance.csv"
            tables.append((t, {k: v for k, v in files.items() if (out / v).exists()}))
        figures = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
        links = {n: n for n in ("claims.md", "claims.csv") if (out / n).exists()}
        collected = {f"collected.{e}": f"collected.{e}" for e in ("csv", "parquet") if (study_dir / f"collected.{e}").exists()}
        if out == study_dir:
            links.update(collected)
        planned = load_planned_jobs(study_dir)
        states = job_states(study_dir, jobs, planned, validated=set(frame["job_id"].tolist()))
        with cycles.collecting_new_only():
            curves = loss_curve_figures(study_dir, states, out / "figures" / "curves")
        anchors = _curve_anchors(states, curves)
        planned_jobs = _plan(jobs, study_dir, planned)
        written.append(write_jobs_csv(out / JOBS_CSV, states, planned_jobs, envs))
        links[JOBS_CSV] = JOBS_CSV
        written.append(write_page(out / "report.html", study=study, scale=scale, tables=tables, figures=figures,
                                  claims=results, jobs=planned_jobs, envs=envs, links=links, states=states,
                                  curves=curves, seeds=seeds_per_cell(frame), curve_anchor=anchors, jobs_csv=JOBS_CSV))
    return written
