"""A split's index: the list of its images (relative paths) and labels, computed once and cached.

Large datasets (1.28M ImageNet files) are listed once; later jobs read the cached index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.roots import cache_dir
from harness.results import atomic_write_text


@dataclass
class Index:
    dataset: str
    split: str
    root: Path
    items: list[str]  # paths relative to root
    labels: np.ndarray | None  # int64 per item, or None when the split has no image-level labels
    classes: list[str] | None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.items).encode())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(
            {
                "dataset": self.dataset,
                "split": self.split,
                "root": str(self.root),
                "items": self.items,
                "labels": None if self.labels is None else self.labels.tolist(),
                "classes": self.classes,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Index:
        d = json.loads(text)
        labels = None if d["labels"] is None else np.asarray(d["labels"], dtype=np.int64)
        return cls(d["dataset"], d["split"], Path(d["root"]), d["items"], labels, d["classes"])


def _cache_key(dataset: str, split: str, root: Path) -> Path:
    root = root.resolve()
    stamp = f"{root}|{root.stat().st_mtime_ns}"
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    return cache_dir("index") / f"{dataset}-{split}-{digest}.json"


def cached_index(dataset: str, split: str, root: Path, build) -> Index:
    """Return the cached index of ``root``'s ``split``, building it with ``build()`` on first use."""
    path = _cache_key(dataset, split, root)
    if path.exists():
        return Index.from_json(path.read_text())
    index = build()
    atomic_write_text(path, index.to_json())
    return index
