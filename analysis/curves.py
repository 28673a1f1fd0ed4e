"""Every job of a study as its folder shows it (state, reason, log, curves) and its training-loss curves:
one figure per study cell, methods overlaid, from each job's ``history.jsonl``. Reads files only (no torch)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from analysis.figures import STYLE, _new_axes, _save, pyplot
from analysis.labels import METHOD_COLOURS, method_key, method_name
from harness import results as R
from harness.curves import HISTORY, progress_text, read_history
from harness.joblog import last_line

STATE_COLUMNS = ["job_id", "stage", "method", "pretrain_dataset", "fraction", "epochs", "seed", "task", "task_dataset",
                 "state", "detail", "log", "history"]


def _state(job_dir: Path, files: set[str]) -> tuple[str, str]:
    """(state, detail) from the folder alone (``files``: its listing): a failure's reason, a running job's progress."""
    state = R.local_job_state(job_dir, files)
    if state in (R.JobState.FAILED, R.JobState.DEPENDENCY_FAILED):
        return state.value, last_line((R.read_json(job_dir / R.FAILED) or {}).get("error", ""))
    if state == R.JobState.RUNNING:
        sub = R.read_json(job_dir / R.SUBMITTED) or {}
        if sub.get("pid") and not R.pid_alive(int(sub["pid"])):
            return R.JobState.PENDING.value, "interrupted; resumes when run again"
        return state.value, progress_text(job_dir)
    return state.value, ""


_MARKS = {R.SPEC, R.SUBMITTED, R.FAILED, R.METRICS}
_UNSETTLED = {R.METRICS, R.FAILED, R.SUBMITTED}
COORDS = STATE_COLUMNS[2:9]
_STAGE_RANK = {"pretrain": 0, "downstream": 1}  # pre-training jobs first, then by job id
_DONE, _PENDING = R.JobState.DONE.value, R.JobState.PENDING.value


def _folder_row(study_dir: Path, name: str, files: set[str], planned, validated: set[str]) -> tuple:
    if planned is not None:  # the launched plan has its coordinates: no spec.json to read
        stage, coords = planned.stage, planned.coords
    else:
        spec = R.read_json(study_dir / name / R.SPEC) or {}
        stage = spec.get("stage") or ("pretrain" if name.startswith("pre-") else "downstream")
        coords = spec.get("coords") or {}
    if R.METRICS in files and name in validated:
        state, detail = _DONE, ""
    elif files.isdisjoint(_UNSETTLED):
        state, detail = _PENDING, ""
    else:
        state, detail = _state(study_dir / name, files)
    return (name, stage, *map(coords.get, COORDS), state, detail,
            f"{name}/{R.LOG}" if R.LOG in files else None, f"{name}/{HISTORY}" if HISTORY in files else None)


def _job_folders(study_dir: Path) -> dict[str, set[str]]:
    """Each job folder's file names, one listing per folder (tables/, figures/, ... hold no job file)."""
    if not study_dir.is_dir():
        return {}
    base = str(study_dir)
    with os.scandir(base) as entries:
        names = sorted(e.name for e in entries if e.is_dir())
    folders = {}
    for name in names:
        files = set(os.listdir(f"{base}/{name}"))
        if not files.isdisjoint(_MARKS):
            folders[name] = files
    return folders


def _pending_rows(known: pd.DataFrame, seen: set[str]) -> list[tuple]:
    """Jobs of ``known`` without a folder: pending, with the coordinates ``known`` has."""
    missing = known[[j not in seen for j in known["job_id"].tolist()]]  # (isin is slow on arrow strings)
    columns = [missing[k].tolist() if k in missing.columns else [None] * len(missing) for k in STATE_COLUMNS[:9]]
    return [(*coords, "pending", "", None, None) for coords in zip(*columns)]


def job_states(study_dir: Path, known: pd.DataFrame | None = None, planned: dict | None = None,
               validated: set[str] = frozenset()) -> pd.DataFrame:
    """One row per job folder (and per job of ``known`` without one: pending), with its coordinates and state.
    ``planned``: the launched plan's jobs by id (coordinates without reading spec.json); ``validated``: jobs
    whose metrics.json the collected results were read from, so it is known to be valid (not read again)."""
    planned = planned or {}
    folders = _job_folders(study_dir)
    rows = [_folder_row(study_dir, name, files, planned.get(name), validated) for name, files in folders.items()]
    if known is not None:
        rows += _pending_rows(known, set(folders))
    rows.sort(key=lambda r: (_STAGE_RANK.get(r[1], 2), r[0]))
    return pd.DataFrame.from_records(rows, columns=STATE_COLUMNS)


def cell_title(row: dict) -> str:
    """The study cell a curve figure shows, methods aside: pre-training data, fraction, epochs (and the task)."""
    data = row.get("pretrain_dataset")
    pre = ("random init" if data is None or pd.isna(data)
           else f"pre-trained on {data}, fraction {row['fraction']:g}, {row['epochs']:g} epochs")
    if row.get("stage") == "downstream":
        return f"{row['task']} on {row['task_dataset']}, {pre}"
    return pre


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _loss_rows(study_dir: Path, job_id: str) -> pd.DataFrame:
    rows = [r for r in read_history(study_dir / job_id) if r["kind"] == "train" and "loss" in r]
    return pd.DataFrame(rows, columns=["step", "loss"]) if rows else pd.DataFrame(columns=["step", "loss"])


def loss_curve_figures(study_dir: Path, states: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    """(cell title, PNG) per study cell with curves: training loss against updates, one colour per method, one
    line per seed. Cells of random init (no pre-training data) share the downstream figure of each task."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with_curves = states[states["history"].notna() & states["method"].notna()]  # method: from spec.json
    if with_curves.empty:
        return []
    titled = with_curves.assign(cell=[cell_title(r) for r in with_curves.to_dict("records")])
    written = []
    plt = pyplot()
    with plt.rc_context(STYLE):
        for title, group in titled.groupby("cell", sort=True):
            fig, ax = _new_axes()
            drawn = set()
            for rec in sorted(group.to_dict("records"), key=lambda r: (method_key(r["method"] or ""), r["seed"] or 0)):
                curve = _loss_rows(study_dir, rec["job_id"])
                if curve.empty:
                    continue
                label = method_name(rec["method"]) if rec["method"] else rec["job_id"]
                ax.plot(curve["step"], curve["loss"], lw=1, color=METHOD_COLOURS.get(rec["method"]),
                        label=None if label in drawn else label)
                drawn.add(label)
            if not drawn:
                plt.close(fig)
                continue
            ax.yaxis.get_major_formatter().set_useOffset(False)
            ax.set_xlabel("update (optimiser steps)")
            ax.set_ylabel("training loss (each method's objective)")
            ax.set_title(title, fontsize=6)
            ax.legend(frameon=False, loc="best")
            ax.grid(alpha=0.3)
            png = [p for p in _save(fig, out_dir / f"curves-{slug(title)}") if p.suffix == ".png"][0]
            written.append((title, png))
    return written
