"""Figures (seaborn, PNG and PDF): the downstream metric against the pre-training fraction, one line per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.tables import headline  # noqa: E402


def fraction_figure(frame: pd.DataFrame, task: str, task_dataset: str, metric: str):
    sub = frame[(frame["task"] == task) & (frame["task_dataset"] == task_dataset) & (frame["metric"] == metric)]
    with_data, no_data = sub[sub["fraction"].notna()], sub[sub["fraction"].isna()]
    fig, ax = plt.subplots(figsize=(3.4, 2.6), dpi=150)  # one paper column wide
    sns.lineplot(data=with_data, x="fraction", y="value", hue="method", style="method", markers=True, dashes=False,
                 errorbar="sd", ax=ax)
    palette = sns.color_palette()
    for i, (method, rows) in enumerate(no_data.groupby("method")):
        ax.axhline(rows["value"].mean(), ls="--", lw=1, color=palette[(len(with_data["method"].unique()) + i) % len(palette)],
                   label=f"{method} (no pre-training data)")
    if with_data["fraction"].nunique() > 1:
        ax.set_xscale("log")
    ax.set_xlabel("fraction of the pre-training data")
    ax.set_ylabel(f"{metric} ({task}, {task_dataset})")
    ax.legend(fontsize=6, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_figures(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    h = headline(frame)
    for (task, ds, metric), _ in h.groupby(["task", "task_dataset", "metric"]):
        fig = fraction_figure(h, task, ds, metric)
        stem = out_dir / f"{task}-{ds}-{metric}-vs-fraction"
        for ext in (".png", ".pdf"):
            fig.savefig(stem.with_suffix(ext))
            written.append(stem.with_suffix(ext))
        plt.close(fig)
    return written
