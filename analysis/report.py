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
from analysis.html import write_page
from analysis.provenance import commits, environments, jobs_frame, varying_params
from analysis.tables import study_tables, write_tables

ALL = ("tables", "figures", "claims", "html")


def write_report(frame: pd.DataFrame, study_dir: Path, scale: str | None = None,
                 what: tuple[str, ...] | None = None) -> list[Path]:
    what = ALL if what is None else what
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


def _plan(jobs: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    return jobs.assign(params_that_differ=varying_params(study_dir, jobs))


def _write_one(frame: pd.DataFrame, study_dir: Path, out: Path, scale: str, what: tuple[str, ...]) -> list[Path]:
    study = str(frame["study"].iloc[0]) if len(frame) else study_dir.name
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_frame(frame)
    envs = environments(study_dir, jobs["job_id"])
    job_commits = commits(envs)
    written: list[Path] = []
    built = study_tables(frame) if {"tables", "html"} & set(what) else []
    if "tables" in what:
        written += write_tables(frame, out / "tables", job_commits, built)
    if "figures" in what:
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
        states = job_states(study_dir, jobs)
        curves = loss_curve_figures(study_dir, states, out / "figures" / "curves")
        anchors = {r["job_id"]: png.stem for r in states.to_dict("records") if isinstance(r["method"], str)
                   for title, png in curves if cell_title(r) == title}
        written.append(write_page(out / "report.html", study=study, scale=scale, tables=tables, figures=figures,
                                  claims=results, jobs=_plan(jobs, study_dir), envs=envs, links=links,
                                  states=states, curves=curves, seeds=seeds_per_cell(frame), curve_anchor=anchors))
    return written
