"""Figures (seaborn, PNG and PDF, one paper column wide): the downstream metric against the pre-training fraction
(log axis) and against pre-training epochs, one line per method; grouped bars of method x pre-training data.
Error bars: the standard deviation over seeds (none with one seed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from analysis.labels import METHOD_COLOURS, fraction_label, method_key, method_name, primary_metrics  # noqa: E402
from analysis.tables import _varies, headline, label_rows, method_row  # noqa: E402

COLUMN_WIDTH_IN = 3.3
STYLE = {"font.size": 7, "axes.labelsize": 7, "axes.titlesize": 7, "legend.fontsize": 6, "xtick.labelsize": 6,
         "ytick.labelsize": 6, "lines.linewidth": 1.2, "lines.markersize": 4, "pdf.fonttype": 42,
         "savefig.bbox": "tight", "savefig.dpi": 200}


def _new_axes(height: float = 2.3):
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, height))
    return fig, ax


def _line_label(rows: pd.DataFrame) -> pd.Series:
    return label_rows(rows, method_row(rows, fraction=False, epochs=False))


def _hue_order(rows: pd.DataFrame, labels: pd.Series) -> list[str]:
    keyed = sorted({(method_key(m), lab) for m, lab in zip(rows["method"], labels)})
    return [lab for _, lab in keyed]


def _no_data_lines(ax, rows: pd.DataFrame, colours: dict[str, tuple]) -> None:
    """Methods without pre-training data (random init) are one value whatever the fraction/epochs: a flat line."""
    for method, g in rows[rows["pretrain_dataset"].isna()].groupby("method"):
        label = method_name(method)
        ax.axhline(g["value"].mean(), ls="--", lw=1, color=colours.get(label, "grey"), label=label)


def line_figure(rows: pd.DataFrame, x: str, xlabel: str, ylabel: str, log_x: bool):
    rows = rows.assign(line=_line_label(rows))
    with_data = rows[rows["pretrain_dataset"].notna()]
    order = _hue_order(rows, rows["line"])
    spare = iter(sns.color_palette("colorblind", len(order)))
    colours = {label: METHOD_COLOURS.get(m) or next(spare) for m, label in zip(rows["method"], rows["line"])}
    fig, ax = _new_axes()
    sns.lineplot(data=with_data, x=x, y="value", hue="line", hue_order=[o for o in order if o in set(with_data["line"])],
                 style="line", markers=True, dashes=False, errorbar="sd", err_style="bars", palette=colours, ax=ax)
    _no_data_lines(ax, rows, colours)
    if log_x:
        ax.set_xscale("log")
        ticks = sorted(with_data[x].unique())
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fraction_label(v) if x == "fraction" else f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, title=None, loc="best")
    ax.grid(alpha=0.3)
    return fig


def bar_figure(rows: pd.DataFrame, ylabel: str):
    """Grouped bars: one group per method (with fraction/epochs where they vary), one bar per pre-training data."""
    rows = rows.assign(group=label_rows(rows, method_row(rows, data=False)),
                       data=rows["pretrain_dataset"].fillna("none (random init)"))
    order = _hue_order(rows, rows["group"])
    data_order = sorted(rows["data"].unique(), key=lambda d: (d == "none (random init)", d))
    fig, ax = _new_axes(2.4)
    sns.barplot(data=rows, x="group", y="value", hue="data", order=order, hue_order=data_order, errorbar="sd",
                palette="colorblind", ax=ax, err_kws={"linewidth": 0.8}, capsize=0.1)
    lo = rows["value"].min()
    if lo > 0:  # zoom on the differences, as the paper's bars would not start at zero for AP/mIoU near each other
        hi = rows.groupby(["group", "data"])["value"].agg(lambda v: v.mean() + (v.std() if len(v) > 1 else 0)).max()
        ax.set_ylim(max(0.0, lo - 0.15 * (hi - lo + 1e-9) - 0.05 * abs(lo)), hi + 0.1 * (hi - lo + 1e-9))
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(frameon=False, title="pre-training data", title_fontsize=6, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=min(3, len(data_order)))
    ax.grid(alpha=0.3, axis="y")
    return fig


def _save(fig, stem: Path) -> list[Path]:
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p)
    plt.close(fig)
    return out


def write_figures(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    h = headline(frame)
    with plt.rc_context(STYLE), sns.axes_style("ticks"):
        for (task, td), panel in h.groupby(["task", "task_dataset"]):
            for metric in primary_metrics(panel["metric"]):
                rows = panel[panel["metric"] == metric]
                ylabel = f"{metric} in % ({task}, {td})"  # every primary metric is a percentage
                if _varies(rows, "fraction"):
                    fig = line_figure(rows, "fraction", "fraction of the pre-training data", ylabel, log_x=True)
                    written += _save(fig, out_dir / f"fractions-{task}-{td}-{metric}")
                if _varies(rows, "epochs"):
                    fig = line_figure(rows, "epochs", "pre-training epochs", ylabel, log_x=True)
                    written += _save(fig, out_dir / f"epochs-{task}-{td}-{metric}")
                if _varies(rows, "pretrain_dataset"):
                    written += _save(bar_figure(rows, ylabel), out_dir / f"bars-{task}-{td}-{metric}")
    return written
