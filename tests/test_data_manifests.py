"""Fraction manifests: nested, class-balanced when labels are used, uniform otherwise, stored with a hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.data import get_index, get_manifest
from harness.data.index import Index
from harness.data.manifests import build_manifest, load_manifest, manifest_path, save_manifest, select_fraction

FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def unbalanced_labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(50, 400, size=30)
    return rng.permutation(np.repeat(np.arange(30), sizes))


def test_fractions_nest_for_one_seed():
    labels = unbalanced_labels()
    subsets = [set(select_fraction(labels, len(labels), f, seed=3).tolist()) for f in FRACTIONS]
    for small, large in zip(subsets, subsets[1:]):
        assert small < large
    assert subsets[-1] == set(range(len(labels)))


def test_class_balance_keeps_the_fraction_of_every_class():
    labels = unbalanced_labels()
    sizes = np.bincount(labels)
    for f in (0.05, 0.1, 0.5):
        kept = np.bincount(labels[select_fraction(labels, len(labels), f, seed=0)], minlength=len(sizes))
        assert np.array_equal(kept, np.maximum(1, np.floor(sizes * f + 0.5)))


def test_uniform_when_unlabelled_and_seed_changes_subset():
    a = select_fraction(None, 1000, 0.1, seed=0)
    b = select_fraction(None, 1000, 0.1, seed=1)
    assert len(a) == len(b) == 100 and not np.array_equal(a, b)
    assert np.array_equal(a, np.sort(a)) and np.array_equal(a, select_fraction(None, 1000, 0.1, seed=0))
    with pytest.raises(ValueError):
        select_fraction(None, 10, 0.0, seed=0)


def test_tiny_fraction_keeps_at_least_one_per_class():
    labels = np.repeat(np.arange(5), 10)
    assert np.bincount(labels[select_fraction(labels, 50, 0.01, seed=0)]).tolist() == [1] * 5


def test_manifest_saved_with_hash_and_corruption_detected(tmp_path):
    index = Index("toy", "train", tmp_path, [f"{i}.png" for i in range(100)], np.arange(100) % 4, list("abcd"))
    m = build_manifest(index, 0.2, seed=0)
    path = save_manifest(m)
    loaded = load_manifest(path)
    assert np.array_equal(loaded.indices, m.indices) and loaded.content_hash == m.content_hash and loaded.balanced
    other = build_manifest(index, 0.2, seed=1)
    assert other.content_hash != m.content_hash
    text = path.read_text().replace(f'"indices": [{m.indices[0]},', f'"indices": [{m.indices[0] + 1},')
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ValueError, match="corrupt"):
        load_manifest(bad)


def test_same_manifest_for_every_caller():
    """Every method reads the same images: get_manifest is a pure function of (dataset, split, fraction, seed)."""
    a = get_manifest("synthetic-objects", "train", 0.1, seed=0)
    b = get_manifest("synthetic-objects", "train", 0.1, seed=0)
    assert a.content_hash == b.content_hash and a.balanced and len(a) == 200
    assert manifest_path(a).exists()
    index = get_index("synthetic-objects", "train")
    assert np.bincount(index.labels[a.indices]).tolist() == [20] * 10


@pytest.mark.parametrize("name", ["synthetic-scenes", "synthetic-segmentation"])
def test_scene_sets_get_uniform_pretraining_fractions(name):
    from harness.data.images import ImageListDataset

    m = get_manifest(name, "train", 0.1, seed=0)
    assert not m.balanced and len(m) == 30
    ds = ImageListDataset(get_index(name, "train"), m.indices)
    img, label = ds[0]
    assert label == -1 and img.mode == "RGB"
    assert set(get_manifest(name, "train", 0.05, seed=0).indices) < set(m.indices)


def test_index_file_roundtrip(tmp_path):
    index = Index("toy", "val", tmp_path, ["a/x.png", "b/é y.png"], np.array([1, 0]), ["a", "b"])
    index.save(tmp_path / "i.npz")
    back = Index.load(tmp_path / "i.npz")
    assert len(back) == 2 and back.content_hash == index.content_hash and "items" not in vars(back)  # not decoded
    assert back.items == index.items and back.labels.tolist() == [1, 0] and back.classes == ["a", "b"]
    assert back.content_hash == index.content_hash and back.root == Path(tmp_path)
    unlabelled = Index("toy", "val", tmp_path, ["a.png"], None, None)
    unlabelled.save(tmp_path / "u.npz")
    assert Index.load(tmp_path / "u.npz").labels is None
