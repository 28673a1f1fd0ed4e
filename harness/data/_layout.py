"""Helpers the layout readers share: split-folder names and JSON annotation files with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataRootError


def split_folder(layout: str, folders: dict[str, str], split: str) -> str:
    """The folder a harness split ("train"/"val") is stored in by ``layout``."""
    if split not in folders:
        raise ValueError(f"{layout} layout has no split {split!r} (splits: {', '.join(folders)})")
    return folders[split]


def read_annotation_json(dataset: str, path: Path, expected: str) -> dict:
    """A dataset's JSON file, or one DataRootError naming the file and the expected layout."""
    if not path.is_file():
        raise DataRootError(f"dataset {dataset!r}: {path} is missing; expected {expected}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataRootError(f"dataset {dataset!r}: {path} is not valid JSON ({e}); expected {expected}") from None
