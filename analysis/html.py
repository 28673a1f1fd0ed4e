"""One static HTML page per study: claims with verdicts, tables, figures, training curves, every job with its
state, and provenance. Self-contained: figures are embedded as data URIs and styles are inline, so the page
works offline and when mailed; links to the files beside it (tables, logs, histories) work next to the results."""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

import pandas as pd

from analysis.claims import FAILS, HOLDS, ClaimResult
from analysis.provenance import commit_labels
from analysis.tables import Table

STYLE = """
body { font-family: sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-top: 1px solid #bbb; border-bottom: 1px solid #bbb; padding: 0.25em 0.6em; text-align: center; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; }
.holds { background: #d8f0d8; } .fails { background: #f6d5d5; } .unknown { background: #eee; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; } figure img { width: 26em; }
.done { background: #d8f0d8; } .failed, .dependency-failed { background: #f6d5d5; } .running { background: #fff3c4; }
figcaption, .small { font-size: 0.8em; color: #555; }
code { font-size: 0.85em; }
"""


# above this many rows a per-job table stays out of the page (a browser struggles with it): jobs.csv holds it
INLINE_ROWS = 2000


def _e(x) -> str:
    if type(x) is str:
        return html.escape(x)
    return html.escape("" if x is None or (isinstance(x, float) and pd.isna(x)) else str(x))


PER_JOB_ENV = ["job_id", "git_commit", "git_dirty", "host", "python"]


def _verdict_class(verdict: str) -> str:
    return {HOLDS: "holds", FAILS: "fails"}.get(verdict, "unknown")


def table_html(table: Table, files: dict[str, str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in [table.row_header, *table.columns])
    d = table.decimals
    body = "".join("<tr>" + "".join(f"<td>{_e(x)}</td>" for x in [r, *(table.text(r, c, d) for c in table.columns)])
                   + "</tr>" for r in table.rows)
    links = " · ".join(f'<a href="{_e(href)}">{_e(name)}</a>' for name, href in files.items())
    links += "".join(f"<br><b>warning:</b> {_e(w)}" for w in table.warnings)
    return (f"<h3>{_e(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f'<p class="small">{links}</p>')


def claims_html(results: list[ClaimResult]) -> str:
    if not results:
        return "<p>No claim of the paper concerns this study.</p>"
    rows = []
    for r in results:
        measured = "<br>".join(f"{_e(p.task_dataset)}: <b>{_e(p.verdict)}</b>, {_e(p.reason)}" +
                               "".join(f"<br>&nbsp;&nbsp;{_e(k)}: {s.mean:.4g}" + (f" ± {s.std:.3g}" if s.n > 1 else "")
                                       + f" (n={s.n}; {_e(' '.join(s.job_ids))})" for k, s in p.samples.items())
                               for p in r.panels)
        ref = f"<br><i>{_e(r.reference_text)}</i>" if r.reference_text else ""
        rows.append(f'<tr class="{_verdict_class(r.verdict)}"><td><b>{_e(r.claim.id)}</b><br>{_e(r.claim.statement)}'
                    f'<br><span class="small">{_e(r.claim.metric)}, {_e(r.claim.task)}; kind: {_e(r.claim.kind)}</span></td>'
                    f"<td><b>{_e(r.verdict)}</b></td><td class=small>{measured}</td>"
                    f"<td class=small>{_e(r.claim.paper)}{ref}</td></tr>")
    rules = {r.claim.kind: r.claim.rule for r in results}
    legend = "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in sorted(rules.items()))
    return (f"<p class=small>Verdict rules (A, B: the cells a claim compares):</p><ul class=small>{legend}</ul>"
            "<table><thead><tr><th>claim</th><th>verdict</th><th>measured</th><th>the paper</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def frame_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = "".join("<tr><td>" + "</td><td>".join(map(_e, row)) + "</td></tr>"
                   for row in zip(*(frame[c].tolist() for c in frame.columns)))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()


def _figure(png: Path, base: Path, caption: str, anchor: str = "") -> str:
    links = f'<a href="{_e(png.relative_to(base).as_posix())}">PNG</a>'
    if (pdf := png.with_suffix(".pdf")).exists():
        links += f' · <a href="{_e(pdf.relative_to(base).as_posix())}">PDF</a>'
    ident = f' id="{_e(anchor)}"' if anchor else ""
    return (f'<figure{ident}><img src="{data_uri(png)}" alt="{_e(caption)}"><figcaption>{_e(caption)} · {links}'
            "</figcaption></figure>")


def figures_html(figures: list[Path], base: Path) -> str:
    out = [_figure(png, base, png.stem) for png in figures]
    return "".join(out) or "<p>No figure: the results vary along no fraction, epochs or pre-training-data axis.</p>"


def error_bars_html(seeds: pd.Series) -> str:
    """How to read the figures and tables: what a point, a ± and an error bar are, and how many seeds each has."""
    counts = seeds.value_counts().sort_index()
    per = ", ".join(f"{n} seed{'s' if n > 1 else ''}: {c} cell{'s' if c > 1 else ''}" for n, c in counts.items())
    return ("<p class=small>Each point and table entry is the mean over training seeds of one study cell (method x "
            "pre-training data x fraction x epochs, on one downstream task). Error bars and ± values are one "
            "standard deviation over those seeds; a cell with a single seed has none. Metrics are percentages "
            f"(top-1 accuracy, COCO AP, mIoU). Seeds per cell: {_e(per) or 'no result yet'}.</p>")


def curves_html(curves: list[tuple[str, Path]], base: Path) -> str:
    if not curves:
        return "<p>No training curve yet (jobs write history.jsonl as they train).</p>"
    return "".join(_figure(png, base, title, anchor=png.stem) for title, png in curves)


def _state_row(r: dict, curve_anchor: dict[str, str]) -> str:
    links = [f'<a href="{_e(r[k])}">{name}</a>' for k, name in (("log", "log"), ("history", "history"))
             if isinstance(r.get(k), str)]
    if r["job_id"] in curve_anchor:
        links.append(f'<a href="#{_e(curve_anchor[r["job_id"]])}">curves</a>')
    where = f"{r['task']} on {r['task_dataset']}" if isinstance(r.get("task"), str) else "pre-training"
    return (f'<tr class="{_e(r["state"])}"><td>{_e(r["job_id"])}</td><td>{_e(where)}</td>'
            f'<td><b>{_e(r["state"])}</b></td><td class=small>{_e(r["detail"])}</td>'
            f'<td class=small>{" · ".join(links)}</td></tr>')


def _states_table(states: pd.DataFrame, curve_anchor: dict[str, str]) -> str:
    rows = "".join(_state_row(r, curve_anchor) for r in states.to_dict("records"))
    return ("<table><thead><tr><th>job</th><th>stage</th><th>state</th><th>detail</th><th>files</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


CELL = ["stage", "method", "pretrain_dataset", "fraction", "epochs", "task", "task_dataset"]


def cells_html(states: pd.DataFrame) -> str:
    """Jobs per study cell (seeds pooled) and state: the view of a study too large to list job by job."""
    counts = states.groupby(CELL, dropna=False, sort=False)["state"].value_counts().unstack(fill_value=0)
    order = [s for s in ("done", "running", "pending", "failed", "dependency-failed") if s in counts.columns]
    counts = counts[order + sorted(set(counts.columns) - set(order))].reset_index()
    counts = counts.sort_values(CELL, key=lambda c: c.map({"pretrain": 0, "downstream": 1})
                                if c.name == "stage" else c, na_position="first")
    return frame_html(counts.astype(object).where(counts.notna(), None))


def states_html(states: pd.DataFrame, curve_anchor: dict[str, str], jobs_csv: str | None = None) -> str:
    """Every job with its state (done, failed and why, running and how far, pending) and links to its files;
    above ``INLINE_ROWS`` jobs, the jobs per cell and state, the failed jobs, and every job in ``jobs_csv``."""
    counts = states["state"].value_counts()
    summary = ", ".join(f"{_e(k)} {v}" for k, v in counts.items())
    head = f"<p class=small>{summary or 'no job has started'}</p>"
    if len(states) <= INLINE_ROWS or jobs_csv is None:
        return head + _states_table(states, curve_anchor)
    failed = states[states["state"].isin(["failed", "dependency-failed"])]
    return (head + f'<p class=small>{len(states)} jobs: each with its state, detail and files in <a href="{_e(jobs_csv)}">'
            f"{_e(jobs_csv)}</a>; here the jobs per study cell and state, then every failed job.</p>"
            + cells_html(states) + f"<h3>Failed jobs ({len(failed)})</h3>"
            + (_states_table(failed, curve_anchor) if len(failed) else "<p>None.</p>"))


def per_job_html(frame: pd.DataFrame, jobs_csv: str | None, what: str) -> str:
    if len(frame) <= INLINE_ROWS or jobs_csv is None:
        return frame_html(frame)
    return f'<p class=small>{len(frame)} jobs: {_e(what)} of each in <a href="{_e(jobs_csv)}">{_e(jobs_csv)}</a>.</p>'


def write_page(path: Path, *, study: str, scale: str, tables: list[tuple[Table, dict[str, str]]], figures: list[Path],
               claims: list[ClaimResult], jobs: pd.DataFrame, envs: pd.DataFrame, links: dict[str, str],
               states: pd.DataFrame | None = None, curves: list[tuple[str, Path]] = (),
               seeds: pd.Series | None = None, curve_anchor: dict[str, str] | None = None,
               jobs_csv: str | None = None) -> Path:
    summary = envs.assign(git=commit_labels(envs))
    prov = (summary.groupby(["git", "python", "packages"], dropna=False)["job_id"].count().rename("jobs").reset_index()
            if len(summary) else summary)
    hosts = ", ".join(sorted({str(h) for h in envs["host"].dropna()})) or "unknown"
    sections = [
        f"<h1>{_e(study)} <span class=small>(scale {_e(scale)})</span></h1>",
        f"<p class=small>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} from the collected results "
        f"({len(jobs)} jobs). " + " · ".join(f'<a href="{_e(h)}">{_e(n)}</a>' for n, h in links.items()) + "</p>",
        "<h2>The paper's claims</h2>", claims_html(claims),
        "<h2>Tables</h2>", "".join(table_html(t, f) for t, f in tables) or "<p>No downstream result yet.</p>",
        "<h2>Figures</h2>", error_bars_html(seeds if seeds is not None else pd.Series(dtype=int)),
        figures_html(figures, path.parent),
        "<h2>Training curves</h2>", curves_html(list(curves), path.parent),
        "<h2>Jobs and their state</h2>",
        states_html(states, curve_anchor or {}, jobs_csv) if states is not None else "<p>No job folder.</p>",
        "<h2>Plan: the jobs with results</h2>", per_job_html(jobs, jobs_csv, "the coordinates and parameters"),
        "<h2>Provenance</h2>", f"<p>Hosts: {_e(hosts)}</p>", frame_html(prov),
        "<h3>Per job</h3>", per_job_html(envs[PER_JOB_ENV], jobs_csv, "the commit, host and Python"),
    ]
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(study)} ({_e(scale)})</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
    path.write_text(page)
    return path
