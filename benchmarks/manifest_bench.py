"""Manifest and index-cache timings at ImageNet scale (a script, not a test).

    PYTHONPATH=. python benchmarks/manifest_bench.py [--items 1281167] [--classes 1000] [--repeat 3]

Builds an in-memory index shaped like ImageNet-1k train (1.28M ImageNet-style paths, 1000 classes of 732-1300
images), then times: the 10% class-balanced manifest (selection alone, and with the index and manifest hashes
that job identities need), saving it, and writing + reading the cached index in the harness's format (.npz)
against plain JSON (the previous format).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.data.index import Index
from harness.data.manifests import build_manifest, select_fraction


def imagenet_like_index(items: int, classes: int, root: Path) -> Index:
    rng = np.random.default_rng(0)
    sizes = rng.integers(732, 1301, size=classes).astype(float)
    sizes = np.floor(sizes / sizes.sum() * items).astype(np.int64)
    sizes[: items - sizes.sum()] += 1
    wnids = [f"n{10000000 + 7919 * k:08d}" for k in range(classes)]
    paths = [f"train/{wnids[c]}/{wnids[c]}_{i}.JPEG" for c in range(classes) for i in range(sizes[c])]
    labels = np.repeat(np.arange(classes), sizes)
    return Index("imagenet-bench", "train", root, paths, labels, wnids)


def best_of(repeat: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_281_167)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        index = imagenet_like_index(args.items, args.classes, tmp)
        print(f"index: {len(index):,} items, {args.classes} classes (built in memory in {time.perf_counter() - t0:.2f} s)")

        t_sel, sel = best_of(args.repeat, lambda: select_fraction(index.labels, len(index), args.fraction, seed=0))
        counts = np.bincount(index.labels[sel])
        print(f"select_fraction {args.fraction:g} class-balanced: {t_sel:.3f} s -> {len(sel):,} images, "
              f"{counts.min()}-{counts.max()} per class")
        t_ihash, _ = best_of(args.repeat, index._compute_hash)
        t_man, manifest = best_of(args.repeat, lambda: build_manifest(index, args.fraction, seed=0))
        t_hash, _ = best_of(args.repeat, lambda: manifest.content_hash)
        print(f"index content hash (once per index; stored in the cache file): {t_ihash:.3f} s")
        print(f"build_manifest (index hash known): {t_man:.3f} s; manifest hash {t_hash * 1000:.1f} ms")
        payload = {"indices": manifest.indices.tolist(), "content_hash": manifest.content_hash}
        t_save, _ = best_of(args.repeat, lambda: (tmp / "m.json").write_text(json.dumps(payload)))
        print(f"save manifest JSON: {t_save:.3f} s ({(tmp / 'm.json').stat().st_size / 1e6:.1f} MB)")

        npz = tmp / "index.npz"
        t_w, _ = best_of(args.repeat, lambda: index.save(npz))
        t_r, back = best_of(args.repeat, lambda: Index.load(npz))
        assert back.items == index.items and np.array_equal(back.labels, index.labels)
        print(f"index cache .npz: write {t_w:.3f} s, read {t_r:.3f} s ({npz.stat().st_size / 1e6:.1f} MB)")

        js = tmp / "index.json"
        doc = lambda: json.dumps({"items": index.items, "labels": index.labels.tolist(), "classes": index.classes})
        t_jw, _ = best_of(args.repeat, lambda: js.write_text(doc()))

        def read_json():
            d = json.loads(js.read_text())
            return d["items"], np.asarray(d["labels"], dtype=np.int64)

        t_jr, _ = best_of(args.repeat, read_json)
        print(f"index cache JSON (previous format): write {t_jw:.3f} s, read {t_jr:.3f} s "
              f"({js.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
