"""Datasets: roots, indexes, fraction manifests and torch datasets, behind one small facade.

    resolve_root(name)                     -> Path (generates a synthetic set on first use)
    get_index(name, split)                 -> Index (cached)
    get_manifest(name, split, fraction, seed) -> Manifest (saved; its hash enters job identities)
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.data import catalog as _catalog  # noqa: F401  (registers the datasets)
from harness.data.imagefolder import EXPECTED as IMAGEFOLDER_EXPECTED
from harness.data.imagefolder import index_imagefolder
from harness.data.index import Index, cached_index
from harness.data.manifests import Manifest, build_manifest, save_manifest
from harness.data.registry import DATASETS, DatasetInfo, register_dataset
from harness.data.roots import cache_dir, configured_root, require_root

# layout name -> (indexer(dataset, root, split) -> Index, description of the expected layout)
LAYOUTS: dict[str, tuple[Callable[[str, Path, str], Index], str]] = {
    "imagefolder": (index_imagefolder, IMAGEFOLDER_EXPECTED),
}

SYNTHETIC_SEED = 0

__all__ = [
    "DATASETS", "DatasetInfo", "register_dataset", "LAYOUTS", "Index", "Manifest",
    "resolve_root", "get_index", "get_manifest", "dataset_info", "synthetic_root",
]


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name)


def synthetic_root(info: DatasetInfo, seed: int = SYNTHETIC_SEED) -> Path:
    return cache_dir("datasets") / f"{info.name}-v{info.generator_version}-s{seed}"


def _generate_once(info: DatasetInfo, root: Path, seed: int) -> None:
    """Generate into a temporary folder and rename, under a lock, so concurrent jobs never see half a set."""
    lock_path = root.with_name(root.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.exists():
            return
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        info.generator(tmp, seed)
        tmp.rename(root)


def resolve_root(name: str) -> Path:
    info = dataset_info(name)
    if info.synthetic:
        root = configured_root(name) or synthetic_root(info)
        if not root.exists():
            _generate_once(info, root, SYNTHETIC_SEED)
        return root
    return require_root(name, LAYOUTS[info.layout][1])


def get_index(name: str, split: str) -> Index:
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r} (splits: {', '.join(info.splits)})")
    indexer = LAYOUTS[info.layout][0]
    root = resolve_root(name)
    return cached_index(name, split, root, lambda: indexer(name, root, split))


def get_manifest(name: str, split: str, fraction: float, seed: int) -> Manifest:
    info = dataset_info(name)
    index = get_index(name, split)
    manifest = build_manifest(index, fraction, seed, balanced=info.labels_for_fractions)
    save_manifest(manifest)
    return manifest
