"""``harness report``: tables and figures of one study from its stored results alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.figures import write_figures
from analysis.tables import write_tables


def write_report(frame: pd.DataFrame, study_dir: Path, scale: str | None = None, what: tuple[str, ...] = ("tables", "figures")) -> list[Path]:
    if scale is not None:
        frame = frame[frame["scale"] == scale]
    written: list[Path] = []
    if "tables" in what:
        written += write_tables(frame, study_dir / "tables")
    if "figures" in what:
        written += write_figures(frame, study_dir / "figures")
    return written
