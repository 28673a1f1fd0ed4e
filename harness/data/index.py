"""A split's index: the list of its images (relative paths) and labels, computed once and cached.

Large datasets (1.28M ImageNet files) are listed once; later jobs read the cached index.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.roots import cache_dir


@dataclass
class Index:
    dataset: str
    split: str
    root: Path
    items: list[str]  # paths relative to root
    labels: np.ndarray | None  # int64 per item, or None when the split has no image-level labels
    classes: list[str] | None
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        if "items" not in self.__dict__:  # loaded, paths not decoded yet
            return self._count
        return len(self.items)

    def __getattr__(self, name: str):
        # a loaded index decodes its paths on first use: planning needs only the count and the stored hash,
        # and splitting ImageNet's 1.28M paths costs about a tenth of a second per split
        if name == "items" and "_blob" in self.__dict__:
            blob = self.__dict__.pop("_blob")
            self.items = blob.decode().split("\n") if blob else []
            return self.items
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def content_hash(self) -> str:
        """A hash of the paths and labels (computed once per object: 1.28M paths take ~0.3 s)."""
        if self._hash is None:
            self._hash = self._compute_hash()
        return self._hash

    def _compute_hash(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.items).encode())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: Path) -> None:
        """Write the index as one ``.npz`` (paths as one newline-joined byte array: fast for 1.28M items)."""
        meta = {"dataset": self.dataset, "split": self.split, "root": str(self.root), "classes": self.classes,
                "content_hash": self.content_hash}
        blob = np.frombuffer("\n".join(self.items).encode(), dtype=np.uint8)
        if np.count_nonzero(blob == ord("\n")) != max(len(self.items) - 1, 0):
            raise ValueError(f"{self.dataset}/{self.split}: an image path contains a newline")
        labels = np.zeros(0, np.int64) if self.labels is None else np.asarray(self.labels, dtype=np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, items=blob, labels=labels, has_labels=np.array(self.labels is not None),
                     meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Index:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            blob = z["items"].tobytes()
            labels = z["labels"] if bool(z["has_labels"]) else None
        index = cls.__new__(cls)
        index.dataset, index.split, index.root = meta["dataset"], meta["split"], Path(meta["root"])
        index.labels, index.classes, index._hash = labels, meta["classes"], meta.get("content_hash")
        index._blob, index._count = blob, blob.count(b"\n") + 1 if blob else 0
        return index


def _root_stamp(root: Path) -> str:
    """The root and the modification times of it and its top-level entries (split folders, annotation files):
    adding a split, a class folder or a new annotation file changes the stamp. Files added deeper inside a
    class folder do not; ``harness data prepare NAME --reindex`` rebuilds the index then."""
    root = root.resolve()
    parts = [f"{root}|{root.stat().st_mtime_ns}"]
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        parts.append(f"{entry.name}|{entry.stat().st_mtime_ns}")
    return "\n".join(parts)


def cache_path(dataset: str, split: str, root: Path) -> Path:
    digest = hashlib.sha256(_root_stamp(root).encode()).hexdigest()[:12]
    return cache_dir("index") / f"{dataset}-{split}-{digest}.npz"


_LOADED: dict[Path, Index] = {}  # this process's indexes, by cache file: planning a grid loads each once


def cached_index(dataset: str, split: str, root: Path, build, rebuild: bool = False) -> Index:
    """Return the cached index of ``root``'s ``split``, building it with ``build()`` on first use."""
    path = cache_path(dataset, split, root)
    if not rebuild and path in _LOADED and path.exists():
        return _LOADED[path]
    if path.exists() and not rebuild:
        index = Index.load(path)
    else:
        index = build()
        index.save(path)
    _LOADED[path] = index
    return index


def peek_cached_index(dataset: str, split: str, root: Path) -> Index | None:
    """The cached index if there is one; never lists the dataset."""
    if not root.is_dir():
        return None
    path = cache_path(dataset, split, root)
    return Index.load(path) if path.exists() else None
