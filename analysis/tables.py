"""Tables: methods as rows, pre-training fractions as columns, mean ± std over seeds (with the seed count)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NO_DATA_COLUMN = "no data"  # methods that use no pre-training data (random init): one value for every fraction


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """The downstream metrics worth a table: evaluation splits, no losses."""
    f = frame[(frame["stage"] == "downstream") & (frame["split"] != "train") & ~frame["metric"].str.endswith("loss")]
    return f.copy()


def fraction_label(f: float) -> str:
    return NO_DATA_COLUMN if pd.isna(f) else f"{100 * f:g}%"


def aggregate(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = frame.groupby(by, dropna=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["job_ids"] = g.apply(lambda s: " ".join(sorted(frame.loc[s.index, "job_id"]))).values
    return out


def cell_text(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f} (n={n})"


def fraction_table(frame: pd.DataFrame, task: str, task_dataset: str, metric: str) -> pd.DataFrame:
    sub = frame[(frame["task"] == task) & (frame["task_dataset"] == task_dataset) & (frame["metric"] == metric)]
    agg = aggregate(sub, ["method", "pretrain_dataset", "fraction", "epochs"])
    agg["column"] = agg["fraction"].map(fraction_label)
    agg["cell"] = [cell_text(m, s, n) for m, s, n in zip(agg["mean"], agg["std"], agg["n"])]
    rows = agg["method"] + np.where(agg["pretrain_dataset"].isna(), "", " (" + agg["pretrain_dataset"].fillna("") + ")")
    agg["row"] = rows
    order = sorted(agg["fraction"].dropna().unique())
    columns = [fraction_label(f) for f in order] + ([NO_DATA_COLUMN] if agg["fraction"].isna().any() else [])
    table = agg.pivot_table(index="row", columns="column", values="cell", aggfunc="first").reindex(columns=columns)
    return table.fillna("")


def to_markdown(table: pd.DataFrame) -> str:
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * len(table.columns)) + "|"]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row.values]) + " |")
    return "\n".join(lines)


def write_tables(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    h = headline(frame)
    for (task, ds, metric), _ in h.groupby(["task", "task_dataset", "metric"]):
        table = fraction_table(h, task, ds, metric)
        stem = out_dir / f"{task}-{ds}-{metric}"
        table.to_csv(stem.with_suffix(".csv"))
        title = f"{metric} after {task} on {ds} (rows: pre-training method (data); columns: fraction of the data)"
        stem.with_suffix(".md").write_text(f"### {title}\n\n{to_markdown(table)}\n")
        written += [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    return written
