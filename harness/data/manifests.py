"""Fraction manifests: which images of a split a job trains on.

For a fraction f and a seed, every image draws one random key from the seed (a random permutation); within each class (or over the
whole split when labels are not used) the images with the smallest keys are kept, round(f * n) of them (at
least one). The same keys serve every fraction, so subsets nest (1% is inside 10% for one seed), and every
method reads the same manifest, so all compare on the same images. The manifest's content hash enters the
identity of every job that uses it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from harness.data.index import Index
from harness.data.roots import cache_dir
from harness.results import atomic_write_text


@dataclass
class Manifest:
    dataset: str
    split: str
    fraction: float
    seed: int
    balanced: bool
    index_hash: str
    indices: np.ndarray  # sorted positions into the index

    @property
    def content_hash(self) -> str:
        h = hashlib.sha256(f"{self.dataset}|{self.split}|{self.index_hash}|".encode())
        h.update(np.ascontiguousarray(self.indices, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.indices)


def select_fraction(labels: np.ndarray | None, n: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-balanced (labels given) or uniform subset; nested across fractions for one seed.

    The per-image keys are a random permutation of 0..n-1 (distinct, so any sort gives the same subset);
    an image is kept when its key is among the round(fraction * size) smallest of its group.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(n)
    keys = np.random.default_rng(seed).permutation(n)
    if labels is None:
        return np.flatnonzero(keys < _keep_count(np.int64(n), fraction))
    groups = np.asarray(labels, dtype=np.int64)
    order = np.argsort(groups * n + keys)  # by group, then by key
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank_in_group = np.arange(n) - np.repeat(starts, sizes)
    keep = rank_in_group < np.repeat(_keep_count(sizes, fraction), sizes)
    return np.sort(order[keep])


def _keep_count(sizes: np.ndarray, fraction: float) -> np.ndarray:
    return np.maximum(1, np.floor(sizes * fraction + 0.5).astype(np.int64))


def build_manifest(index: Index, fraction: float, seed: int, balanced: bool = True) -> Manifest:
    labels = index.labels if balanced else None
    indices = select_fraction(labels, len(index), fraction, seed)
    return Manifest(index.dataset, index.split, fraction, seed, labels is not None, index.content_hash, indices)


def manifest_path(m: Manifest) -> Path:
    # content-addressed: a changed index or selection rule never meets a stale file
    name = f"{m.dataset}-{m.split}-f{m.fraction:g}-s{m.seed}-{m.content_hash}.json"
    return cache_dir("manifests") / name


@cache
def _rule_stamp() -> str:
    """A hash of this module, where the selection rule lives: a changed rule never meets a stale summary."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def summary_path(index: Index, fraction: float, seed: int, balanced: bool) -> Path:
    """Where the (content hash, size) of the manifest these inputs select is kept, keyed by the inputs."""
    kind = "balanced" if balanced and index.labels is not None else "uniform"
    name = f"{index.dataset}-{index.split}-f{fraction:g}-s{seed}-{kind}-{index.content_hash}-{_rule_stamp()}.json"
    return cache_dir("manifests", "summaries") / name


def save_manifest(m: Manifest) -> Path:
    path = manifest_path(m)
    if not path.exists():
        payload = {
            "dataset": m.dataset, "split": m.split, "fraction": m.fraction, "seed": m.seed,
            "balanced": m.balanced, "index_hash": m.index_hash, "content_hash": m.content_hash,
            "indices": m.indices.tolist(),
        }
        atomic_write_text(path, json.dumps(payload))
    return path


def load_manifest(path: Path) -> Manifest:
    d = json.loads(Path(path).read_text())
    m = Manifest(d["dataset"], d["split"], d["fraction"], d["seed"], d["balanced"], d["index_hash"],
                 np.asarray(d["indices"], dtype=np.int64))
    if m.content_hash != d["content_hash"]:
        raise ValueError(f"manifest {path} is corrupt: its content hash does not match")
    return m
