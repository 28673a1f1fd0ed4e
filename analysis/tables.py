"""Paper-shaped tables from the collected frame: mean ± std over seeds (n), in Markdown, LaTeX and CSV, each with
a provenance CSV that names the jobs behind every cell.

Shapes, chosen from what the frame holds for each downstream task and dataset:
  summary        rows: method (pre-training data, fraction, epochs where they vary); columns: every metric
  fractions      rows: method; columns: fraction of the pre-training data (+ "no data" for random init)
  epochs         rows: method; columns: pre-training epochs
  data-x-method  rows: pre-training data; columns: method (COCO box/mask AP, ADE20k mIoU)
  target-x-source rows: target dataset; columns: method / pre-training source (target itself, ImageNet, ...)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.labels import (CLASSIFICATION_TASKS, epochs_label, fraction_label, method_key, method_name,
                             metric_key, primary_metrics)
from analysis.stats import Sample

CELL_SEP = " ± "
SEEDS_NOTE = "mean ± std over seeds (number of seeds)"


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """The downstream metrics worth a table: evaluation splits, no losses. A metric reported on several evaluation
    splits (e.g. val and test) is named ``metric@split`` so that splits are never averaged together."""
    f = frame[(frame["stage"] == "downstream") & (frame["split"] != "train") & ~frame["metric"].str.endswith("loss")]
    f = f.copy()
    several = f.groupby(["task", "metric"])["split"].transform("nunique") > 1
    if several.any():  # (string arithmetic on an empty or all-null column fails with pyarrow-backed strings)
        f.loc[several, "metric"] = f.loc[several, "metric"].astype(str) + "@" + f.loc[several, "split"].astype(str)
    return f


@dataclass
class Table:
    stem: str  # file name without extension
    title: str
    row_header: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Sample] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def decimals(self) -> int:
        means = [abs(s.mean) for s in self.cells.values()]
        return 3 if means and max(means) <= 1.0 else 2

    def text(self, row: str, column: str, decimals: int | None = None) -> str:
        """A cell as text; renderers pass ``decimals`` (one scan of the table, not one per cell)."""
        s = self.cells.get((row, column))
        if s is None:
            return ""
        d = self.decimals if decimals is None else decimals
        spread = f"{CELL_SEP}{s.std:.{d}f}" if s.n > 1 else ""
        return f"{s.mean:.{d}f}{spread} ({s.n})"

    def text_frame(self) -> pd.DataFrame:
        d = self.decimals
        data = [[self.text(r, c, d) for c in self.columns] for r in self.rows]
        return pd.DataFrame(data, index=pd.Index(self.rows, name=self.row_header), columns=self.columns)


# what the label and sort functions may read of a row: a cell's coordinates, never a value
LABEL_COLUMNS = ["method", "pretrain_dataset", "fraction", "epochs", "task", "task_dataset", "metric"]


def build(rows: pd.DataFrame, row_of: Callable[[pd.Series], str], column_of: Callable[[pd.Series], str],
          row_sort: Callable[[pd.Series], tuple], column_sort: Callable[[pd.Series], tuple], **meta) -> Table:
    """Group the frame's rows into cells by their row and column labels; orders follow the sort keys.

    The label and sort functions see each distinct combination of ``LABEL_COLUMNS`` once (as a dict), not each
    row, and every cell is filled in one pass: the cost grows with the cells, not with rows times cells."""
    rows = rows.reset_index(drop=True)
    seeds, values, job_ids = rows["seed"].tolist(), rows["value"].tolist(), rows["job_id"].tolist()
    members: dict[tuple[str, str], list[int]] = {}
    row_keys: dict[str, tuple] = {}
    column_keys: dict[str, tuple] = {}
    for r, idx in _distinct_coordinates(rows):
        row, column = row_of(r), column_of(r)
        row_keys.setdefault(row, row_sort(r))
        column_keys.setdefault(column, column_sort(r))
        members.setdefault((row, column), []).extend(idx.tolist())
    table = Table(rows=_ordered(row_keys), columns=_ordered(column_keys), **meta)
    for (row, column) in sorted(members):
        cell = sorted(members[(row, column)], key=lambda i: (seeds[i], i))
        table.cells[(row, column)] = Sample(tuple(float(values[i]) for i in cell), tuple(str(job_ids[i]) for i in cell))
        if len({seeds[i] for i in cell}) < len(cell):  # e.g. two downstream entries that differ only in their parameters
            table.warnings.append(f"cell ({row}, {column}) pools several results of one seed: "
                                  f"{' '.join(str(job_ids[i]) for i in cell)}")
    return table


def _distinct_coordinates(rows: pd.DataFrame):
    """(coordinates as a dict, positions of the rows that have them) for each distinct combination."""
    for coords, idx in rows.groupby(LABEL_COLUMNS, dropna=False, sort=False).indices.items():
        yield {k: (None if pd.isna(v) else v) for k, v in zip(LABEL_COLUMNS, coords)}, idx


def label_rows(rows: pd.DataFrame, label_of: Callable[[pd.Series], str]) -> pd.Series:
    """``label_of`` of every row, computed once per distinct combination of ``LABEL_COLUMNS``."""
    labels = [""] * len(rows)
    for r, idx in _distinct_coordinates(rows):
        label = label_of(r)
        for i in idx:
            labels[i] = label
    return pd.Series(labels, index=rows.index, dtype=object)


def _ordered(keys: dict[str, tuple]) -> list[str]:
    return [label for _, label in sorted((key, label) for label, key in keys.items())]


def _varies(frame: pd.DataFrame, column: str) -> bool:
    return frame[column].dropna().nunique() > 1


def method_row(frame: pd.DataFrame, *, data: bool | None = None, fraction: bool | None = None,
               epochs: bool | None = None) -> Callable[[pd.Series], str]:
    """A row label: the method, plus whichever of data / fraction / epochs varies in ``frame``."""
    data = _varies(frame, "pretrain_dataset") if data is None else data
    fraction = _varies(frame, "fraction") if fraction is None else fraction
    epochs = _varies(frame, "epochs") if epochs is None else epochs

    def label(r: pd.Series) -> str:
        parts = []
        if pd.notna(r["pretrain_dataset"]):
            parts += [r["pretrain_dataset"]] if data else []
            parts += [fraction_label(r["fraction"])] if fraction else []
            parts += [epochs_label(r["epochs"])] if epochs else []
        return method_name(r["method"]) + (f" ({', '.join(parts)})" if parts else "")

    return label


def method_sort(r: pd.Series) -> tuple:
    has_data = pd.notna(r["pretrain_dataset"])
    return (method_key(r["method"]), str(r["pretrain_dataset"]) if has_data else "",
            -(r["fraction"] if pd.notna(r["fraction"]) else 2.0), r["epochs"] if pd.notna(r["epochs"]) else 0)


def summary_table(panel: pd.DataFrame, task: str, task_dataset: str) -> Table:
    return build(panel, method_row(panel), lambda r: r["metric"], method_sort, lambda r: metric_key(r["metric"]),
                 stem=f"summary-{task}-{task_dataset}", row_header="pre-training",
                 title=f"{task} on {task_dataset}: every metric, {SEEDS_NOTE}")


def fraction_table(rows: pd.DataFrame, task: str, task_dataset: str, metric: str) -> Table:
    return build(rows, method_row(rows, fraction=False), lambda r: fraction_label(r["fraction"]), method_sort,
                 lambda r: (pd.isna(r["fraction"]), r["fraction"] if pd.notna(r["fraction"]) else 0),
                 stem=f"fractions-{task}-{task_dataset}-{metric}", row_header="method",
                 title=f"{metric} after {task} on {task_dataset} by fraction of the pre-training data; "
                       f"{SEEDS_NOTE}")


def epochs_table(rows: pd.DataFrame, task: str, task_dataset: str, metric: str) -> Table:
    return build(rows, method_row(rows, epochs=False), lambda r: epochs_label(r["epochs"]), method_sort,
                 lambda r: (pd.isna(r["epochs"]), r["epochs"] if pd.notna(r["epochs"]) else 0),
                 stem=f"epochs-{task}-{task_dataset}-{metric}", row_header="method",
                 title=f"{metric} after {task} on {task_dataset} by pre-training epochs; {SEEDS_NOTE}")


def _data_label(r: pd.Series) -> str:
    return r["pretrain_dataset"] if pd.notna(r["pretrain_dataset"]) else "none (random init)"


def data_method_table(rows: pd.DataFrame, task: str, task_dataset: str, metric: str) -> Table:
    def row_sort(r: pd.Series) -> tuple:
        target_first = r["pretrain_dataset"] != task_dataset
        return (pd.isna(r["pretrain_dataset"]), target_first, str(r["pretrain_dataset"]))

    return build(rows, _data_label, method_row(rows, data=False), row_sort, method_sort,
                 stem=f"data-x-method-{task}-{task_dataset}-{metric}", row_header="pre-training data",
                 title=f"{metric} after {task} on {task_dataset}: pre-training data x method; {SEEDS_NOTE}")


def _source(r: pd.Series) -> str:
    if pd.isna(r["pretrain_dataset"]):
        return "no data"
    return "target" if r["pretrain_dataset"] == r["task_dataset"] else str(r["pretrain_dataset"])


def target_source_table(rows: pd.DataFrame, task: str, metric: str) -> Table:
    def column(r: pd.Series) -> str:
        return method_name(r["method"]) if pd.isna(r["pretrain_dataset"]) else f"{method_name(r['method'])} / {_source(r)}"

    def column_sort(r: pd.Series) -> tuple:
        return (method_key(r["method"]), _source(r) != "target", _source(r))

    return build(rows, lambda r: r["task_dataset"], column, lambda r: (r["task_dataset"],), column_sort,
                 stem=f"target-x-source-{task}-{metric}", row_header="target",
                 title=f"{metric} after {task} on each target: method / pre-training source (target = the target's "
                       f"own images); {SEEDS_NOTE}")


def study_tables(frame: pd.DataFrame) -> list[Table]:
    h = headline(frame)
    tables: list[Table] = []
    for (task, td), panel in h.groupby(["task", "task_dataset"]):
        tables.append(summary_table(panel, task, td))
        for metric in primary_metrics(panel["metric"]):
            rows = panel[panel["metric"] == metric]
            if _varies(rows, "fraction"):
                tables.append(fraction_table(rows, task, td, metric))
            if _varies(rows, "epochs"):
                tables.append(epochs_table(rows, task, td, metric))
            if _varies(rows, "pretrain_dataset"):
                tables.append(data_method_table(rows, task, td, metric))
    for (task, metric), rows in h[h["task"].isin(CLASSIFICATION_TASKS)].groupby(["task", "metric"]):
        target_only = rows["pretrain_dataset"] == rows["task_dataset"]
        elsewhere = rows["pretrain_dataset"].notna() & ~target_only
        if metric in primary_metrics(rows["metric"]) and target_only.any() and elsewhere.any():
            tables.append(target_source_table(rows, task, metric))
    return tables


# ---- renderers ---------------------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    header = [table.row_header, *table.columns]
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]
    d = table.decimals
    for r in table.rows:
        lines.append("| " + " | ".join(esc(x) for x in [r, *(table.text(r, c, d) for c in table.columns)]) + " |")
    return "\n".join(lines)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    out = "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$")


def to_latex(table: Table) -> str:
    """A booktabs table through pandas' ``Styler.to_latex``; every cell and header escaped by ``latex_escape``."""
    text = table.text_frame().reset_index()
    frame = pd.DataFrame([[latex_escape(x) for x in row] for row in text.itertuples(index=False)],
                         columns=[latex_escape(c) for c in [table.row_header, *table.columns]])
    body = frame.style.hide(axis="index").to_latex(
        column_format="l" + "c" * len(table.columns), hrules=True, position="t", position_float="centering",
        caption=latex_escape(table.title), label=f"tab:{table.stem.replace('_', '-')}")
    return "% requires \\usepackage{booktabs}\n" + body.replace("\\centering", "\\centering\n\\small", 1)


def upstreams(frame: pd.DataFrame) -> dict[str, str | None]:
    """Each downstream job's pre-training job."""
    jobs = frame.drop_duplicates("job_id")
    return dict(zip(jobs["job_id"].tolist(), jobs["upstream"].tolist()))


def provenance_frame(table: Table, frame: pd.DataFrame, commits: dict[str, str] | None = None,
                     upstream: dict[str, str | None] | None = None) -> pd.DataFrame:
    """One line per cell: its numbers and the downstream jobs (and their pre-training jobs) behind it."""
    upstream = upstreams(frame) if upstream is None else upstream
    records = []
    for r in table.rows:
        for c in table.columns:
            s = table.cells.get((r, c))
            if s is None:
                continue
            ups = [str(upstream.get(j) or "") for j in s.job_ids]
            record = {"row": r, "column": c, "mean": s.mean, "std": s.std, "n": s.n,
                      "values": " ".join(f"{v:.6g}" for v in s.values), "job_ids": " ".join(s.job_ids),
                      "upstream_job_ids": " ".join(ups)}
            if commits is not None:
                record["git_commits"] = " ".join(sorted({commits.get(j) or "unknown" for j in s.job_ids}))
            records.append(record)
    return pd.DataFrame(records)


def write_table(table: Table, frame: pd.DataFrame, out_dir: Path, commits: dict[str, str] | None = None,
                upstream: dict[str, str | None] | None = None) -> list[Path]:
    stem = out_dir / table.stem
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex"),
             stem.parent / f"{stem.name}.provenance.csv"]
    table.text_frame().to_csv(paths[0])
    notes = "".join(f"\n> warning: {w}\n" for w in table.warnings)
    paths[1].write_text(f"### {table.title}\n\n{to_markdown(table)}\n{notes}")
    paths[2].write_text(to_latex(table))
    provenance_frame(table, frame, commits, upstream).to_csv(paths[3], index=False)
    return paths


def write_tables(frame: pd.DataFrame, out_dir: Path, commits: dict[str, str] | None = None,
                 tables: list[Table] | None = None) -> list[Path]:
    """Write every table of the study (``tables``: already built from ``frame``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    upstream = upstreams(frame)
    for table in study_tables(frame) if tables is None else tables:
        written += write_table(table, frame, out_dir, commits, upstream)
    return written
