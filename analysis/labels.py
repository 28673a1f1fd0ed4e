"""Display names and orders shared by tables, figures and the report."""

from __future__ import annotations

import pandas as pd

METHOD_NAMES = {"none": "random init", "supervised": "supervised", "dino": "DINO", "mae": "MAE", "beit": "BEiT",
                "splitmask": "SplitMask"}
METHOD_ORDER = list(METHOD_NAMES)
# one colour per method in every figure (colour-blind-safe hues; SplitMask, the paper's method, in purple)
METHOD_COLOURS = {"none": "#949494", "supervised": "#0173B2", "dino": "#DE8F05", "mae": "#CC78BC", "beit": "#029E73",
                  "splitmask": "#6A3D9A"}
# the metric a task is judged by first; tables list every evaluation metric, figures and pivots these
PRIMARY_METRICS = ("top1", "bbox_AP", "segm_AP", "mIoU")
METRIC_ORDER = ("top1", "top5", "bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75", "mIoU",
                "mAcc", "aAcc")
CLASSIFICATION_TASKS = ("finetune", "linear_probe", "knn")
NO_DATA = "no data"  # the column of methods that use no pre-training data (random init)


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def method_key(method: str) -> tuple:
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def metric_key(metric: str) -> tuple:
    return (METRIC_ORDER.index(metric), "") if metric in METRIC_ORDER else (len(METRIC_ORDER), metric)


def fraction_label(f: float) -> str:
    return NO_DATA if pd.isna(f) else f"{100 * f:g}%"


def epochs_label(e) -> str:
    return NO_DATA if pd.isna(e) else f"{int(e)} ep"


def primary_metrics(metrics) -> list[str]:
    """The panel's primary metrics, or its first metric when it has none of them."""
    present = sorted(set(metrics.unique() if isinstance(metrics, pd.Series) else metrics), key=metric_key)
    chosen = [m for m in present if m.split("@")[0] in PRIMARY_METRICS]  # metric@split too
    return chosen or present[:1]
