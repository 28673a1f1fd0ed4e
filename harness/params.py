"""Typed checks of a study's method and task parameter overrides, at plan time.

An override must have its default's type (an int where the default is an int, a number where it is a float,
a list where it is a list) and a numeric one must be finite and non-negative; counts and sizes that a run
divides by or loops over must be positive. A bad value then fails ``plan`` naming the key, instead of a worker.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

POSITIVE = {"epochs", "batch_size", "eval_batch_size", "feature_batch_size", "lr", "blr", "k", "crop_size",
            "test_size", "max_size", "updates", "vocab_size", "kmeans_iters", "tokenizer_images", "tokenizer_patches",
            "out_dim", "lr_ref_batch"}
SHARES = {"warmup_fraction"}
# numbers whose default may be None (derived or disabled): a value given for them must still be a number
OPTIONAL_NUMBERS = {"lr", "blr", "min_lr", "weight_decay_end", "layer_decay", "clip_grad", "warmup_epochs",
                    "warmup_fraction", "epochs",
                    "updates"}


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    return {str: "a string", list: "a list", tuple: "a list", dict: "a mapping"}.get(type(default), "")


def _has_type(value: Any, default: Any, name: str = "") -> bool:
    if value is None and name in OPTIONAL_NUMBERS:  # e.g. epochs: None where a task runs a number of updates
        return True
    if default is None:
        return value is None or name not in OPTIONAL_NUMBERS or (isinstance(value, Real) and not isinstance(value, bool))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, Real)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_override(name: str, value: Any, default: Any) -> None:
    """Raise ValueError("<name>: why (got value)") for a value a run cannot use."""
    if not _has_type(value, default, name):
        expected = _type_name(default) if default is not None else "a number"
        raise ValueError(f"{name}: expected {expected} like the default {default!r} (got {value!r})")
    if isinstance(value, bool) or not isinstance(value, Real):
        return
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number (got {value!r})")
    if name in SHARES and value > 1:
        raise ValueError(f"{name}: must be a share of the run, at most 1 (got {value!r})")
    if name in POSITIVE and value <= 0:
        raise ValueError(f"{name}: must be positive (got {value!r})")
    if value < 0:
        raise ValueError(f"{name}: must not be negative (got {value!r})")


def check_overrides(overrides: dict[str, Any], defaults: dict[str, Any]) -> None:
    for name, value in overrides.items():
        check_override(name, value, defaults.get(name))
