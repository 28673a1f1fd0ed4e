"""Figures (matplotlib, PNG and PDF, one paper column wide): the downstream metric against the pre-training fraction
(log axis) and against pre-training epochs, one line per method; grouped bars of method x pre-training data.
Points and bars are means over seeds; error bars the standard deviation over seeds (none with one seed).
matplotlib is imported when a figure is drawn, not with this module."""

from __future__ import annotations

import colorsys
from pathlib import Path

import pandas as pd

from analysis.labels import METHOD_COLOURS, fraction_label, method_key, method_name, primary_metrics
from analysis.tables import _varies, headline, label_rows, method_row

COLUMN_WIDTH_IN = 3.3
STYLE = {"font.size": 7, "axes.labelsize": 7, "axes.titlesize": 7, "legend.fontsize": 6, "xtick.labelsize": 6,
         "ytick.labelsize": 6, "lines.linewidth": 1.2, "lines.markersize": 4, "pdf.fonttype": 42,
         "savefig.bbox": "tight", "savefig.dpi": 200}
# seaborn's "ticks" style, palette "colorblind" and first markers: the figures' look, without importing seaborn
TICKS = {"figure.facecolor": "white", "axes.facecolor": "white", "axes.edgecolor": ".15", "axes.labelcolor": ".15",
         "axes.axisbelow": True, "axes.grid": False, "grid.color": ".8", "grid.linestyle": "-", "text.color": ".15",
         "xtick.color": ".15", "ytick.color": ".15", "xtick.direction": "out", "ytick.direction": "out",
         "xtick.top": False, "ytick.right": False, "xtick.bottom": True, "ytick.left": True,
         "lines.solid_capstyle": "round", "patch.edgecolor": "w", "patch.force_edgecolor": True,
         "font.family": ["sans-serif"],
         "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"]}
COLORBLIND = ["#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#CA9161", "#FBAFE4", "#949494", "#ECE133",
              "#56B4E9"]
MARKERS = ["o", "X", (4, 0, 45), "P", (4, 0, 0), (4, 1, 0), "^", (4, 1, 45), "v"]
BAR_WIDTH, BAR_SATURATION, ERROR_COLOUR = 0.8, 0.75, ".26"
# Without ligatures every glyph has one character: the PDF embeds one font subset instead of a second one for the
# ligature glyphs (each subset costs a full fontTools pass over the font)
NO_LIGATURES = ("-liga",)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _new_axes(height: float = 2.3):
    return pyplot().subplots(figsize=(COLUMN_WIDTH_IN, height), dpi=STYLE["savefig.dpi"])


def _line_label(rows: pd.DataFrame) -> pd.Series:
    return label_rows(rows, method_row(rows, fraction=False, epochs=False))


def _hue_order(methods: pd.Series, labels: pd.Series) -> list[str]:
    pairs = pd.DataFrame({"m": methods.to_numpy(object), "l": labels.to_numpy(object)}).drop_duplicates()
    return [lab for _, lab in sorted((method_key(m), lab) for m, lab in zip(pairs["m"], pairs["l"]))]


def _spread(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and standard deviation over seeds (NaN for one seed: no error bar) of each group of ``keys``."""
    return rows.groupby(keys, sort=True)["value"].agg(["mean", "std"]).reset_index()


def _no_data_lines(ax, rows: pd.DataFrame, colours: dict[str, str]) -> None:
    """Methods without pre-training data (random init) are one value whatever the fraction/epochs: a flat line."""
    for method, g in rows[rows["pretrain_dataset"].isna()].groupby("method"):
        label = method_name(method)
        ax.axhline(g["value"].mean(), ls="--", lw=1, color=colours.get(label, "grey"), label=label)


def _method_lines(ax, with_data: pd.DataFrame, x: str, order: list[str], colours: dict[str, str]) -> None:
    """One line per label with a marker at each mean and an error bar of one standard deviation."""
    points = _spread(with_data, ["line", x])
    present = [o for o in order if o in set(points["line"])]
    for i, label in enumerate(present):
        p = points[points["line"] == label]
        colour = colours[label]
        ax.plot(p[x], p["mean"], color=colour, marker=MARKERS[i % len(MARKERS)], markeredgewidth=0.75,
                markeredgecolor="w", label=label)
        bars = ax.errorbar(p[x], p["mean"], yerr=p["std"], linestyle="", color=colour)
        for part in bars.get_children():
            if hasattr(part, "set_capstyle"):
                part.set_capstyle("round")


def line_figure(rows: pd.DataFrame, x: str, xlabel: str, ylabel: str, log_x: bool):
    from matplotlib.ticker import FuncFormatter, NullFormatter

    rows = rows.assign(line=_line_label(rows))
    with_data = rows[rows["pretrain_dataset"].notna()]
    order = _hue_order(rows["method"], rows["line"])
    spare = iter(COLORBLIND[i % len(COLORBLIND)] for i in range(len(order)))
    pairs = rows[["method", "line"]].drop_duplicates()
    colours = {label: METHOD_COLOURS.get(m) or next(spare) for m, label in zip(pairs["method"], pairs["line"])}
    fig, ax = _new_axes()
    _method_lines(ax, with_data, x, order, colours)
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


def _desaturate(colour: str, prop: float) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    h, lum, s = colorsys.rgb_to_hls(*to_rgb(colour))
    return colorsys.hls_to_rgb(h, lum, s * prop)


def _bars(ax, cells: pd.DataFrame, order: list[str], data_order: list[str]) -> None:
    """Bars side by side within each group (one per pre-training data the group has), each with its error bar."""
    position = {g: i for i, g in enumerate(order)}
    dodge = cells.groupby("group")["data"].nunique().max() > 1
    n = len(data_order) if dodge else 1
    width, cap = BAR_WIDTH / n, 0.1 / n / 2
    for k, data in enumerate(data_order):
        c = cells[cells["data"] == data]
        centre = c["group"].map(position).to_numpy(float) + (width * k + width / 2 - BAR_WIDTH / 2 if dodge else 0)
        colour = _desaturate(COLORBLIND[k % len(COLORBLIND)], BAR_SATURATION)
        ax.bar(centre - width / 2, c["mean"], width=width, align="edge", color=colour, label=data)
        for x, lo, hi in zip(centre, c["mean"] - c["std"], c["mean"] + c["std"]):
            ax.plot([x - cap, x + cap, float("nan"), x, x, float("nan"), x - cap, x + cap],
                    [lo, lo, float("nan"), lo, hi, float("nan"), hi, hi], color=ERROR_COLOUR, linewidth=0.8)
    ax.set_xticks(range(len(order)), order)
    ax.set_xlim(-0.5, len(order) - 0.5)


def bar_figure(rows: pd.DataFrame, ylabel: str):
    """Grouped bars: one group per method (with fraction/epochs where they vary), one bar per pre-training data."""
    rows = rows.assign(group=label_rows(rows, method_row(rows, data=False)),
                       data=rows["pretrain_dataset"].fillna("none (random init)"))
    order = _hue_order(rows["method"], rows["group"])
    data_order = sorted(rows["data"].unique(), key=lambda d: (d == "none (random init)", d))
    fig, ax = _new_axes(2.4)
    _bars(ax, _spread(rows, ["group", "data"]), order, data_order)
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
    """PNG and PDF cropped to one tight bounding box, laid out once (not once per format)."""
    plt = pyplot()
    from matplotlib.text import Text

    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for text in fig.findobj(Text):
        text.set_fontfeatures(NO_LIGATURES)
    fig.draw_without_rendering()
    bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    for p in out:
        fig.savefig(p, bbox_inches=bbox)
    plt.close(fig)
    return out


def write_figures(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    h = headline(frame)
    with pyplot().rc_context({**STYLE, **TICKS}):
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
