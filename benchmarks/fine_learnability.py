"""Is ``synthetic-fine`` learnable by the tiny scale's ViT? Fine-tune ``vit-tiny-32`` on it with the harness's own
``finetune`` task (its tiny defaults: batch 64, lr 2e-3, layer decay 0.75, label smoothing 0.1, RandomResizedCrop
0.35-1 + flip) from random init and from any given ``encoder.pt`` files, and report val top-1/top-5 (a sanity
check of the data, not a harness job; nothing is written under the results folder).

    PYTHONPATH=. python benchmarks/fine_learnability.py [--epochs 20] [--seeds 0 1] [--threads 1] \
        [--encoder supervised-synobj=results/small-datasets/pre-supervised-.../encoder.pt ...] \
        [--train-per-class N --val-per-class N]   # a non-default size is generated into a temporary folder

With default sizes the cached set is used (``$HARNESS_CACHE``); other sizes are generated into a temporary
root given to the harness as ``HARNESS_DATA_SYNTHETIC_FINE``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs (the tiny studies use 20)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="vit-tiny-32")
    ap.add_argument("--encoder", action="append", default=[], metavar="NAME=PATH",
                    help="also fine-tune from this encoder.pt (repeatable); random init is always run")
    ap.add_argument("--no-random", action="store_true", help="skip the random-init run")
    ap.add_argument("--train-per-class", type=int, default=None)
    ap.add_argument("--val-per-class", type=int, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from harness.data import get_index, resolve_root
    from harness.data.synthetic.fine import TINY, generate_fine
    from harness.engine import seed_everything
    from harness.models.vit import encoder_config
    from harness.tasks import TASKS, TaskContext

    sizes = {k: v for k, v in (("train_per_class", args.train_per_class), ("val_per_class", args.val_per_class))
             if v is not None and v != TINY[k]}
    tmp = None
    if sizes:
        tmp = tempfile.TemporaryDirectory(prefix="synfine-")
        root = Path(tmp.name) / "synthetic-fine"
        t0 = time.time()
        generate_fine(root, 0, **sizes)
        print(f"generated {sizes} in {time.time() - t0:.1f} s")
        os.environ["HARNESS_DATA_SYNTHETIC_FINE"] = str(root)
    else:
        t0 = time.time()
        root = resolve_root("synthetic-fine")
        print(f"dataset {root} ({time.time() - t0:.1f} s)")
    n_train, n_val = len(get_index("synthetic-fine", "train")), len(get_index("synthetic-fine", "val"))
    print(f"train {n_train} images, val {n_val}, {len(get_index('synthetic-fine', 'train').classes)} classes")

    starts: list[tuple[str, Path | None]] = [] if args.no_random else [("random init", None)]
    for item in args.encoder:
        name, _, path = item.partition("=")
        starts.append((name, Path(path)))
    task_cls = TASKS.get("finetune")
    params = task_cls.resolved_params("tiny", {"epochs": args.epochs})
    cfg = encoder_config(args.model)
    print(f"{args.model}, finetune {params}")
    print("| start | seed | top-1 | top-5 | train loss | wall |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, path in starts:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="ft-") as job_dir:
                seed_everything(seed)
                ctx = TaskContext(job_dir=Path(job_dir), params=params, encoder_cfg=cfg, encoder_path=path,
                                  dataset="synthetic-fine", seed=seed, device=torch.device("cpu"), scale="tiny")
                t0 = time.time()
                rows = {r["name"]: r["value"] for r in task_cls().run(ctx)}
                print(f"| {name} | {seed} | {rows['top1']:.1f} | {rows['top5']:.1f} | {rows['train_loss']:.3f} "
                      f"| {time.time() - t0:.0f} s |", flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
