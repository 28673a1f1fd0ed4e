"""Epoch-boundary overhead of the training loop at 1 % vs 100 % of an ImageNet-sized set (a script, not a test).

    PYTHONPATH=. python benchmarks/epoch_boundary_bench.py [--updates 1000] [--workers 10] [--batch 128] [--repeats 5]

With a fixed number of updates, 1 % of ImageNet crosses an epoch boundary every ~100 updates (per-GPU batch 128),
100 % every ~10,000. The script times ``updates`` updates of ``harness.engine.train`` (a linear model, so that
the loop, the loader and the epoch ends are what is measured) over a synthetic 1.28M-entry index with the
paper's loader settings (10 workers, per-GPU batch 128; images 3x16x16 instead of 3x224x224, with a random flip
drawn from the item's RNG) at both fractions, best of ``repeats`` in alternating order, after a warm-up run,
and prints the ratio. For comparison it times the loader the
engine used before: a new DataLoader (and its workers) at every epoch, iterated over the same batches.
Goal: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from harness.engine import TrainConfig, epoch_order, train, updates_per_epoch

IMAGENET_TRAIN = 1_281_167


class SyntheticImages(Dataset):
    """Items of a 1.28M-entry index (labels only); a fraction keeps a random subset of its entries."""

    def __init__(self, fraction: float, size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 1000, size=IMAGENET_TRAIN)
        keep = np.sort(rng.choice(IMAGENET_TRAIN, size=max(1, int(round(fraction * IMAGENET_TRAIN))), replace=False))
        self.entries, self.labels, self.size = keep, labels[keep], size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        image = torch.full((3, self.size, self.size), float(self.entries[i] % 251))
        if torch.rand(()) < 0.5:  # an augmentation that draws from the item's RNG
            image = image.flip(-1)
        return image, int(self.labels[i])


def time_engine(dataset: Dataset, args, folder: Path) -> float:
    model = nn.Linear(3 * args.size * args.size, 10)  # small: the loop and the loader are what is timed

    def step(batch):
        x, y = batch
        return nn.functional.cross_entropy(model(x.flatten(1)), y % 10), {}

    cfg = TrainConfig(batch_size=args.batch, total_updates=args.updates, warmup_updates=0, lr=1e-3,
                      num_workers=args.workers)
    t0 = time.perf_counter()
    train(model, step, dataset, cfg, folder / f"ckpt-{len(dataset)}.pt")
    return time.perf_counter() - t0


def time_per_epoch_loaders(dataset: Dataset, args) -> float:
    """The previous loop's loader: one DataLoader per epoch, its workers started and stopped with it."""
    t0, done, epoch = time.perf_counter(), 0, 0
    per_epoch = updates_per_epoch(len(dataset), args.batch)
    while done < args.updates:
        order = epoch_order(len(dataset), TrainConfig(batch_size=args.batch, total_updates=0, warmup_updates=0, lr=0), epoch)
        batches = [order[i * args.batch:(i + 1) * args.batch] for i in range(per_epoch)]
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=args.workers,
                            generator=torch.Generator().manual_seed(epoch))
        for _ in loader:
            done += 1
            if done >= args.updates:
                break
        epoch += 1
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sets = {f: SyntheticImages(f, args.size) for f in (0.01, 1.0)}
    result: dict = {"updates": args.updates, "workers": args.workers, "batch": args.batch, "image": args.size,
                    "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        runs = 0

        def engine(d: Dataset) -> float:
            nonlocal runs
            runs += 1
            return time_engine(d, args, Path(tmp) / str(runs))

        warm = argparse.Namespace(**{**vars(args), "updates": 5})
        time_engine(sets[0.01], warm, Path(tmp) / "warm-up")  # imports and first-call costs stay out
        for name, fn in (("engine", engine), ("per_epoch_loaders", lambda d: time_per_epoch_loaders(d, args))):
            times: dict[float, list[float]] = {0.01: [], 1.0: []}
            for r in range(args.repeats):  # alternate the order; the best of each is the least disturbed
                for f in ((0.01, 1.0) if r % 2 == 0 else (1.0, 0.01)):
                    times[f].append(fn(sets[f]))
            t = {f: min(v) for f, v in times.items()}
            boundaries = {f: args.updates / updates_per_epoch(len(d), args.batch) for f, d in sets.items()}
            result[name] = {"s_1pct": [round(x, 2) for x in times[0.01]], "s_100pct": [round(x, 2) for x in times[1.0]],
                            "ratio_of_best": round(t[0.01] / t[1.0], 3), "epoch_ends_1pct": round(boundaries[0.01], 1),
                            "epoch_ends_100pct": round(boundaries[1.0], 2)}
            print(f"{name:<18} {args.updates} updates: 1 % {t[0.01]:.2f} s ({boundaries[0.01]:.0f} epoch ends), "
                  f"100 % {t[1.0]:.2f} s -> ratio {t[0.01] / t[1.0]:.3f} (goal <= 1.05; best of {args.repeats})",
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
