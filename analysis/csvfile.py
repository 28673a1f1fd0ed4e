"""Frames written as CSV by the csv module, column by column: what ``DataFrame.to_csv(index=False)`` writes
(missing values empty, floats in their shortest form), without pandas' per-chunk formatting."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd


def _cell(v: object) -> object:
    return None if v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) else v


def _column(values: pd.Series) -> list:
    if values.dtype.kind == "f":
        return [None if v != v else v for v in values.tolist()]  # NaN != NaN
    if values.dtype.kind in "iub":
        return values.tolist()
    return [_cell(v) for v in values.tolist()]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    if frame.columns.empty:  # pandas' own way of writing a frame without columns
        frame.to_csv(path, index=False)
        return path
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(frame.columns)
        out.writerows(zip(*(_column(frame[c]) for c in frame.columns)))
    return path
