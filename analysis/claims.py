"""The paper's claims (``claims.yaml``) checked against collected results: holds / does not hold / not enough data.

Each claim names its study, task, metric, the cells it compares and its kind; the verdict follows the noise rule
of ``analysis.stats`` (at least ``MIN_SEEDS`` seeds per side, differences measured in standard errors). The
paper's two known numbers are shown next to the measured difference, never used to decide.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from analysis.stats import K_SE, MIN_SEEDS, Sample, enough, standard_error
from analysis.tables import headline

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "not enough data"
Bound = float | Literal["min", "max"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Selector(Strict):
    """A cell of the study grid. A key left out is unconstrained; ``pretrain_dataset: null`` is random init,
    ``target`` the downstream dataset itself; ``min``/``max`` the smallest/largest value present."""

    method: str | None = None
    pretrain_dataset: str | None = None
    fraction: Bound | None = None
    epochs: Bound | None = None

    def constraints(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.model_fields_set}

    def describe(self) -> str:
        parts = []
        for k, v in self.constraints().items():
            parts.append(f"{k}={'none' if v is None else v}")
        return ", ".join(parts)


class Reference(Strict):
    difference: float
    model: str
    scale: str


class Claim(Strict):
    id: str
    study: str
    statement: str
    paper: str  # what the paper says, with its confidence tag from the notes
    task: str
    metric: str
    task_dataset: str | None = None
    kind: Literal["better", "no_worse", "degrades_more", "longest_not_best"]
    a: Selector | None = None
    b: Selector | None = None
    worse: str | None = None
    than: str | None = None
    where: Selector = Selector()
    from_: Selector | None = Field(None, alias="from")
    to: Selector | None = None
    reference: Reference | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Claim:
        needed = {"better": ("a", "b"), "no_worse": ("a", "b"), "longest_not_best": ("a",),
                  "degrades_more": ("worse", "than", "from_", "to")}[self.kind]
        missing = [n.rstrip("_") for n in needed if getattr(self, n) is None]
        if missing:
            raise ValueError(f"claim {self.id!r} of kind {self.kind} needs {', '.join(missing)}")
        return self

    @property
    def rule(self) -> str:
        n = f"with at least {MIN_SEEDS} seeds per cell and some spread over them"
        if self.kind == "no_worse":
            return (f"d = mean(A) - mean(B); holds if d >= -{K_SE:g} SE, does not hold if d < -{K_SE:g} SE ({n}; "
                    f"SE = sqrt(s_A^2/n_A + s_B^2/n_B))")
        what = {"better": "d = mean(A) - mean(B)",
                "degrades_more": f"d = drop({self.worse}) - drop({self.than}), drop = mean(from) - mean(to)",
                "longest_not_best": "d = mean(best shorter schedule) - mean(longest schedule)"}[self.kind]
        return (f"{what}; holds if d > {K_SE:g} SE, does not hold if d <= 0, not enough data in between ({n}; "
                f"SE combines the standard errors of every mean in d)")


class ClaimsFile(Strict):
    stand_ins: dict[str, str] = {}
    claims: list[Claim]

    @model_validator(mode="after")
    def _unique_ids(self) -> ClaimsFile:
        ids = [c.id for c in self.claims]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate claim ids: {sorted(dup)}")
        return self


def load_claims(path: Path = CLAIMS_FILE) -> ClaimsFile:
    return ClaimsFile.model_validate(yaml.safe_load(path.read_text()))


@dataclass
class PanelResult:
    """A claim on one downstream dataset."""

    task_dataset: str
    verdict: str
    reason: str
    difference: float = math.nan
    se: float = math.nan
    samples: dict[str, Sample] = field(default_factory=dict)  # side label -> sample


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    panels: list[PanelResult]

    @property
    def reference_text(self) -> str:
        r = self.claim.reference
        return "" if r is None else f"paper: {r.difference:+g} {self.claim.metric} with {r.model} (scale {r.scale})"


def _settled(d: float) -> float:
    """A difference of means with the last bits that summing equal values in another order leaves dropped: equal
    means give exactly 0 (which the rules read as "does not hold"), not +-7e-15."""
    return round(d, 9) + 0.0


def _decide(kind: str, d: float, se: float, samples: list[Sample]) -> tuple[str, str]:
    if not enough(*samples):
        return UNKNOWN, f"needs >= {MIN_SEEDS} seeds per cell, has n = {', '.join(str(s.n) for s in samples)}"
    if se == 0:  # identical values over seeds: the seed varies nothing, so there is no measure of the noise
        return UNKNOWN, f"d = {d:+.3g} with no spread over seeds (do the seeds vary anything?)"
    margin = f"d = {d:+.3g}, {K_SE:g} SE = {K_SE * se:.3g}"
    if kind == "no_worse":
        return (HOLDS, f"{margin}: not significantly worse") if d >= -K_SE * se else (FAILS, f"{margin}: significantly worse")
    if d > K_SE * se:
        return HOLDS, f"{margin}: significant"
    if d <= 0:
        return FAILS, f"{margin}: the other way round or equal"
    return UNKNOWN, f"{margin}: right direction, within the noise"


class Panel:
    """The rows of one study, task, downstream dataset and metric, with datasets named as the paper names them."""

    def __init__(self, rows: pd.DataFrame, stand_ins: dict[str, str]):
        self.rows = rows.assign(paper_data=rows["pretrain_dataset"].map(lambda d: stand_ins.get(d, d) if pd.notna(d) else None))

    def _match_data(self, rows: pd.DataFrame, value: str | None) -> pd.Series:
        if value is None:
            return rows["pretrain_dataset"].isna()
        if value == "target":
            return rows["pretrain_dataset"] == rows["task_dataset"]
        return rows["paper_data"] == value

    def resolve(self, sel: dict[str, Any]) -> dict[str, Any]:
        """min/max -> the smallest/largest value present among rows with the same pre-training data (any method),
        so that two methods compared at ``min`` meet at the same fraction."""
        out = dict(sel)
        pool = self.rows[self._match_data(self.rows, sel["pretrain_dataset"])] if "pretrain_dataset" in sel else self.rows
        for key in ("fraction", "epochs"):
            if out.get(key) in ("min", "max"):
                values = pool[key].dropna()
                out[key] = (values.min() if out[key] == "min" else values.max()) if len(values) else math.nan
        return out

    def select(self, sel: dict[str, Any]) -> tuple[Sample | None, str]:
        sel = self.resolve(sel)
        rows = self.rows
        for key, value in sel.items():
            if key == "pretrain_dataset":
                rows = rows[self._match_data(rows, value)]
            elif key == "method":
                rows = rows[rows["method"] == value]
            elif value is None:
                rows = rows[rows[key].isna()]
            else:
                rows = rows[rows[key].astype(float).sub(float(value)).abs() < 1e-9]
        desc = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sel.items())
        if rows.empty:
            return None, f"no results for {desc}"
        cells = rows[["pretrain_dataset", "fraction", "epochs"]].astype(str).drop_duplicates()
        if len(cells) > 1 or rows["seed"].duplicated().any():
            return None, f"{desc} matches several grid cells; the claim must name one"
        return Sample.from_rows(rows.sort_values("seed")), desc


def _sel(claim: Claim, *parts: Selector | None, method: str | None = None) -> dict[str, Any]:
    out = claim.where.constraints()
    for p in parts:
        if p is not None:
            out.update(p.constraints())
    if method is not None:
        out["method"] = method
    return out


def _evaluate_panel(claim: Claim, panel: Panel, task_dataset: str) -> PanelResult:
    if claim.kind == "longest_not_best":
        return _evaluate_schedule(claim, panel, task_dataset)
    if claim.kind == "degrades_more":
        sides = {f"{m} {name}": _sel(claim, s, method=m) for m in (claim.worse, claim.than)
                 for name, s in (("from", claim.from_), ("to", claim.to))}
    else:
        sides = {"A": _sel(claim, claim.a), "B": _sel(claim, claim.b)}
    samples, descs = {}, {}
    for label, sel in sides.items():
        sample, desc = panel.select(sel)
        if sample is None:
            return PanelResult(task_dataset, UNKNOWN, f"{label}: {desc}")
        samples[label], descs[label] = sample, desc
    s = list(samples.values())
    d = _settled(s[0].mean - s[1].mean if claim.kind != "degrades_more"
                 else (s[0].mean - s[1].mean) - (s[2].mean - s[3].mean))
    se = standard_error(*s)
    verdict, reason = _decide(claim.kind, d, se, s)
    return PanelResult(task_dataset, verdict, reason, d, se, samples)


def _evaluate_schedule(claim: Claim, panel: Panel, task_dataset: str) -> PanelResult:
    """The longest schedule against the best shorter one, for the same method and pre-training data."""
    base = {k: v for k, v in _sel(claim, claim.a).items() if k != "epochs"}
    mine = panel.rows[panel.rows["method"] == base["method"]] if "method" in base else panel.rows
    schedules = sorted({int(e) for e in mine["epochs"].dropna()})
    if len(schedules) < 2:
        return PanelResult(task_dataset, UNKNOWN, "needs at least two pre-training schedules")
    samples: dict[str, Sample] = {}
    for e in schedules:
        sample, desc = panel.select({**base, "epochs": float(e)})
        if sample is None:
            return PanelResult(task_dataset, UNKNOWN, desc)
        samples[f"{e} epochs"] = sample
    longest = samples[f"{schedules[-1]} epochs"]
    best_label, best = max(list(samples.items())[:-1], key=lambda kv: kv[1].mean)
    d, se = _settled(best.mean - longest.mean), standard_error(best, longest)
    verdict, reason = _decide(claim.kind, d, se, [best, longest])
    return PanelResult(task_dataset, verdict, f"best shorter: {best_label}; {reason}", d, se, samples)


def combine(panels: list[PanelResult]) -> str:
    verdicts = [p.verdict for p in panels]
    if not verdicts:
        return UNKNOWN
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else UNKNOWN


def evaluate_claim(claim: Claim, frame: pd.DataFrame, stand_ins: dict[str, str]) -> ClaimResult:
    h = headline(frame)
    rows = h[(h["study"] == claim.study) & (h["task"] == claim.task) & (h["metric"] == claim.metric)]
    if claim.task_dataset is not None:
        rows = rows[rows["task_dataset"].map(lambda d: stand_ins.get(d, d)) == claim.task_dataset]
    panels = [_evaluate_panel(claim, Panel(g, stand_ins), td) for td, g in rows.groupby("task_dataset")]
    if not panels:
        panels = [PanelResult(claim.task_dataset or "-", UNKNOWN,
                              f"no {claim.metric} results of task {claim.task} in study {claim.study}")]
    return ClaimResult(claim, combine(panels), panels)


def evaluate_study(frame: pd.DataFrame, study: str, claims: ClaimsFile | None = None) -> list[ClaimResult]:
    claims = claims or load_claims()
    return [evaluate_claim(c, frame, claims.stand_ins) for c in claims.claims if c.study == study]


# ---- output --------------------------------------------------------------------------------------------------------

def _sample_text(s: Sample) -> str:
    spread = f" ± {s.std:.3g}" if s.n > 1 else ""
    return f"{s.mean:.4g}{spread} (n={s.n})"


def results_frame(results: list[ClaimResult]) -> pd.DataFrame:
    records = []
    for r in results:
        c = r.claim
        for p in r.panels:
            records.append({
                "claim": c.id, "study": c.study, "verdict": r.verdict, "task": c.task, "task_dataset": p.task_dataset,
                "metric": c.metric, "kind": c.kind, "panel_verdict": p.verdict, "difference": p.difference,
                "standard_error": p.se, "reason": p.reason,
                "cells": "; ".join(f"{k}: {_sample_text(s)}" for k, s in p.samples.items()),
                "job_ids": "; ".join(f"{k}: {' '.join(s.job_ids)}" for k, s in p.samples.items()),
                "reference": r.reference_text, "statement": c.statement, "paper": c.paper, "rule": c.rule})
    return pd.DataFrame(records)


def to_markdown(results: list[ClaimResult]) -> str:
    lines = ["| claim | verdict | measured | rule | paper |", "|---|---|---|---|---|"]
    for r in results:
        measured = "<br>".join(f"{p.task_dataset}: {p.verdict} ({p.reason})" for p in r.panels)
        paper = r.claim.paper + (f"<br>{r.reference_text}" if r.reference_text else "")
        lines.append(f"| **{r.claim.id}**: {r.claim.statement} | **{r.verdict}** | {measured} | {r.claim.rule} | {paper} |")
    return "\n".join(line.replace("\n", " ") for line in lines)


def write_claims(results: list[ClaimResult], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "claims.csv", out_dir / "claims.md", out_dir / "claims.json"]
    results_frame(results).to_csv(paths[0], index=False)
    paths[1].write_text("## The paper's claims\n\n" + to_markdown(results) + "\n")
    paths[2].write_text(json.dumps(results_frame(results).to_dict(orient="records"), indent=1, default=str) + "\n")
    return paths
