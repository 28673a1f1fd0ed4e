"""One static HTML page per study: claims with verdicts, tables, figures, the jobs present and their provenance.
No script, no external resource: figures are linked relatively, styles are inline, so it opens offline."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd

from analysis.claims import FAILS, HOLDS, ClaimResult
from analysis.provenance import commit_label
from analysis.tables import Table

STYLE = """
body { font-family: sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-top: 1px solid #bbb; border-bottom: 1px solid #bbb; padding: 0.25em 0.6em; text-align: center; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; }
.holds { background: #d8f0d8; } .fails { background: #f6d5d5; } .unknown { background: #eee; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; } figure img { width: 26em; }
figcaption, .small { font-size: 0.8em; color: #555; }
code { font-size: 0.85em; }
"""


def _e(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and pd.isna(x)) else str(x))


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
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figures_html(figures: list[Path], base: Path) -> str:
    out = []
    for png in figures:
        pdf = png.with_suffix(".pdf")
        rel = png.relative_to(base).as_posix()
        pdf_link = f' · <a href="{_e(pdf.relative_to(base).as_posix())}">PDF</a>' if pdf.exists() else ""
        out.append(f'<figure><img src="{_e(rel)}" alt="{_e(png.stem)}"><figcaption>{_e(png.stem)}{pdf_link}'
                   "</figcaption></figure>")
    return "".join(out) or "<p>No figure: the results vary along no fraction, epochs or pre-training-data axis.</p>"


def write_page(path: Path, *, study: str, scale: str, tables: list[tuple[Table, dict[str, str]]], figures: list[Path],
               claims: list[ClaimResult], jobs: pd.DataFrame, envs: pd.DataFrame, links: dict[str, str]) -> Path:
    summary = envs.assign(git=envs.apply(commit_label, axis=1))
    prov = (summary.groupby(["git", "python", "packages"], dropna=False)["job_id"].count().rename("jobs").reset_index()
            if len(summary) else summary)
    hosts = ", ".join(sorted({str(h) for h in envs["host"].dropna()})) or "unknown"
    sections = [
        f"<h1>{_e(study)} <span class=small>(scale {_e(scale)})</span></h1>",
        f"<p class=small>Generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} from the collected results "
        f"({len(jobs)} jobs). " + " · ".join(f'<a href="{_e(h)}">{_e(n)}</a>' for n, h in links.items()) + "</p>",
        "<h2>The paper's claims</h2>", claims_html(claims),
        "<h2>Tables</h2>", "".join(table_html(t, f) for t, f in tables) or "<p>No downstream result yet.</p>",
        "<h2>Figures</h2>", figures_html(figures, path.parent),
        "<h2>Plan: the jobs present</h2>", frame_html(jobs),
        "<h2>Provenance</h2>", f"<p>Hosts: {_e(hosts)}</p>", frame_html(prov),
        "<h3>Per job</h3>", frame_html(envs[["job_id", "git_commit", "git_dirty", "host", "python"]]),
    ]
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(study)} ({_e(scale)})</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
    path.write_text(page)
    return path
