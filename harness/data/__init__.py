"""Datasets: roots, indexes, fraction manifests and torch datasets, behind one small facade.

    resolve_root(name)                     -> Path (generates a synthetic set on first use)
    get_index(name, split)                 -> Index (cached)
    get_manifest(name, split, fraction, seed) -> Manifest (saved; its hash enters job identities)
    check_dataset(name)                    -> {split: number of images}; one clear error if the root is wrong
    dataset_version(name)                  -> generator version of a synthetic set, None for a real one
    dataset_fingerprint(name)              -> hash of that version and every split's index (job identities)

Layouts (how a root is read): ``imagefolder``, ``coco``, ``ade20k``, ``inat2019``. Torch datasets:
``images.ImageListDataset`` (images of an index, pre-training and classification),
``coco_detection.CocoDetectionDataset`` and ``segmentation.SegmentationDataset`` (downstream dense tasks).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from harness.data import ade20k, coco, imagefolder, inat
from harness.data import catalog as _catalog  # noqa: F401  (registers the datasets)
from harness.data.index import Index, cached_index
from harness.data.manifests import Manifest, build_manifest, save_manifest, summary_path
from harness.data.registry import DATASETS, DatasetInfo, register_dataset
from harness.data.roots import cache_dir, configured_root, require_root
from harness.errors import DataRootError

# layout name -> (indexer(dataset, root, split) -> Index, description of the expected layout)
LAYOUTS: dict[str, tuple[Callable[[str, Path, str], Index], str]] = {
    "imagefolder": (imagefolder.index_imagefolder, imagefolder.EXPECTED),
    "coco": (coco.index_coco, coco.EXPECTED),
    "ade20k": (ade20k.index_ade20k, ade20k.EXPECTED),
    "inat2019": (inat.index_inat2019, inat.EXPECTED),
}

SYNTHETIC_SEED = 0

__all__ = [
    "DATASETS", "DatasetInfo", "register_dataset", "LAYOUTS", "Index", "Manifest",
    "resolve_root", "get_index", "get_manifest", "manifest_summary", "dataset_info", "synthetic_root", "check_dataset",
    "dataset_version", "dataset_fingerprint", "without_roots",
]


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name)


def synthetic_root(info: DatasetInfo, seed: int = SYNTHETIC_SEED) -> Path:
    return cache_dir("datasets") / f"{info.name}-v{info.generator_version}-s{seed}"


def _generate_once(info: DatasetInfo, root: Path, seed: int) -> None:
    """Generate into a temporary folder and rename, under a lock, so concurrent jobs never see half a set."""
    with FileLock(root.with_name(root.name + ".lock")):
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


# while planning without data (``without_roots``): dataset -> why its root is unusable
_MISSING: dict[str, str] | None = None


@contextmanager
def without_roots() -> Iterator[dict[str, str]]:
    """Plan a study whose data is not all here (``harness plan --scale paper`` on a laptop): a dataset whose root
    is missing or malformed stands in with placeholder images, as many as its declaration's ``images`` counts
    (one when it declares none); the yielded mapping collects every such dataset and its error. The placeholders'
    job ids are provisional and no manifest is saved."""
    global _MISSING
    _MISSING = {}
    try:
        yield _MISSING
    finally:
        _MISSING = None


def _placeholder(info: DatasetInfo, split: str, error: DataRootError) -> Index:
    _MISSING[info.name] = str(error)
    n = int(info.extra.get("images", {}).get(split, 1))
    return Index(info.name, split, Path("/missing"), [f"?{i}" for i in range(n)], None, None)


def get_index(name: str, split: str, rebuild: bool = False) -> Index:
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r} (splits: {', '.join(info.splits)})")
    indexer = LAYOUTS[info.layout][0]
    if _MISSING is not None:
        try:
            root = resolve_root(name)
            return cached_index(_index_key(info), split, root, lambda: indexer(name, root, split), rebuild=rebuild)
        except DataRootError as e:
            return _placeholder(info, split, e)
    root = resolve_root(name)
    return cached_index(_index_key(info), split, root, lambda: indexer(name, root, split), rebuild=rebuild)


def _index_key(info: DatasetInfo) -> str:
    """The index cache's name for a dataset: declared class names (their order is the label order) enter it."""
    if not info.extra.get("classes"):
        return info.name
    return f"{info.name}-c{hashlib.sha256(json.dumps(info.extra['classes']).encode()).hexdigest()[:8]}"


def get_manifest(name: str, split: str, fraction: float, seed: int) -> Manifest:
    info = dataset_info(name)
    index = get_index(name, split)
    manifest = build_manifest(index, fraction, seed, balanced=info.labels_for_fractions and index.labels is not None)
    if _MISSING is None or name not in _MISSING:
        save_manifest(manifest)
    return manifest


def manifest_summary(name: str, split: str, fraction: float, seed: int) -> tuple[str, int]:
    """(content hash, number of images) of ``get_manifest(...)``, kept in the cache after the first time: the
    plan needs only these, and selecting a fraction of ImageNet's 1.28M images takes a noticeable time."""
    from harness.results import atomic_write_json, read_json

    path = summary_path(get_index(name, split), fraction, seed, dataset_info(name).labels_for_fractions)
    if (doc := read_json(path)) is not None:
        return doc["content_hash"], doc["images"]
    manifest = get_manifest(name, split, fraction, seed)
    if _MISSING is None or name not in _MISSING:  # a missing root's placeholders are never kept
        atomic_write_json(path, {"content_hash": manifest.content_hash, "images": len(manifest)})
    return manifest.content_hash, len(manifest)


def check_dataset(name: str) -> dict[str, int]:
    """Resolve and index every split of ``name`` (cached after the first time): the plan calls it for each
    downstream dataset, so a missing or malformed root fails at plan time with one error naming the layout."""
    return {split: len(get_index(name, split)) for split in dataset_info(name).splits}


def dataset_version(name: str) -> int | None:
    """The generator version of a synthetic set, None for a real one. A job identity holds it because a new
    generator can change a set's images while keeping its file names, which is all an index hash sees."""
    info = dataset_info(name)
    return info.generator_version if info.synthetic else None


def dataset_fingerprint(name: str) -> str:
    """What a downstream job's identity holds of the dataset it trains and evaluates on: a hash of the
    dataset's version and of every split's index (paths and labels), so that a regenerated or re-exported
    set gives new job ids instead of old results (pre-training jobs hold their manifest's hash instead)."""
    h = hashlib.sha256(f"{name}|{dataset_version(name)}".encode())
    for split in dataset_info(name).splits:
        h.update(f"|{split}:{get_index(name, split).content_hash}".encode())
    return h.hexdigest()[:16]
