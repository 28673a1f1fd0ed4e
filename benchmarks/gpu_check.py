"""The paper-scale configurations on a real GPU: a few bf16 training updates through the harness's own engine
(``harness.engine.train``: autocast, AdamW, clipping, EMA/after-step hooks, checkpoint) for every pre-training
method at ViT-B/16, 224 px, with each method's paper hyper-parameters, then every downstream task's own ``run``
at its paper input size on the embedded synthetic datasets (images upscaled: 224 px classification, 512 px
crops for UperNet, 640-1024 px for Mask R-CNN) followed by its evaluation. Prints and writes (``--out``)
throughput and peak GPU memory. A check and a benchmark, not a test (CI has no GPU):

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check.json        # on a GPU
    PYTHONPATH=. python benchmarks/gpu_check.py --smoke                     # CPU dry run at tiny sizes

Pre-training images are random and held in memory (each sample transformed once, then reused), so those numbers
measure the training step and the loader hand-off, not JPEG decoding or augmentation. The batch is per GPU: the
paper's global batches (BEiT/SplitMask 2048, DINO 1024, MAE 4096) are spread over several GPUs by DDP.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from torch.utils.data import Dataset

from harness.engine import TrainConfig, train
from harness.methods import METHODS
from harness.models.vit import encoder_config
from methods_bench import build_method, random_images  # benchmarks/ is on sys.path when run as a script


class Cycled(Dataset):
    """``length`` items that cycle over a few pre-transformed samples."""

    def __init__(self, samples: list, length: int):
        self.samples, self.length = samples, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.samples[i % len(self.samples)]


def gib(n_bytes: int) -> float:
    return round(n_bytes / 2**30, 2)


def pretrain_check(name: str, args, device: torch.device, workdir: Path) -> dict:
    method = build_method(name, args.model, device, {"batch_size": args.batch}, scale=args.scale)
    params = method.params
    transform = method.train_transform()
    images = random_images(args.distinct, encoder_config(args.model).img_size)
    samples = [(transform(img), i % (method.num_classes or 1)) for i, img in enumerate(images)]
    total = args.warmup + args.steps
    cfg = TrainConfig(batch_size=args.batch, total_updates=total, warmup_updates=1, lr=params["lr"],
                      min_lr=params["min_lr"], weight_decay=params["weight_decay"], betas=tuple(params["betas"]),
                      clip_grad=params["clip_grad"],
                      num_workers=params.get("num_workers", 0) if args.workers is None else args.workers)
    stamps: list[float] = []

    def after_step(step: int, total_steps: int) -> None:
        method.after_step(step, total_steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    state = train(method, method.training_step, Cycled(samples, total * args.batch), cfg, workdir / f"{name}.pt",
                  desc=f"{name} {args.model}", after_step=after_step, collate_fn=method.collate_fn(), device=device,
                  optimizer_model=method.optimized_module())
    (workdir / f"{name}.pt").unlink()
    step_s = (stamps[-1] - stamps[args.warmup - 1]) / args.steps
    row = state.history[-1]
    return {"check": f"pretrain {name}", "model": args.model, "batch": args.batch, "updates": state.step,
            "ms_per_update": round(1e3 * step_s, 1), "images_per_s": round(args.batch / step_s, 1),
            "peak_mem_gib": row.get("peak_mem_gib"), "loss": round(row["loss"], 4),
            "params_m": round(sum(p.numel() for p in method.parameters()) / 1e6, 1)}


def downstream_check(task_name: str, dataset: str, overrides: dict, args, device: torch.device, workdir: Path) -> dict:
    from harness.tasks import TASKS, TaskContext

    task = TASKS.get(task_name)
    params = task.resolved_params(args.scale, overrides)
    job_dir = workdir / task_name
    job_dir.mkdir(exist_ok=True)
    ctx = TaskContext(job_dir=job_dir, params=params, encoder_cfg=encoder_config(args.model), encoder_path=None,
                      dataset=dataset, seed=0, device=device, scale=args.scale)
    t0 = time.perf_counter()
    rows = task().run(ctx)
    seconds = time.perf_counter() - t0
    history = torch.load(ctx.checkpoint_path, map_location="cpu", weights_only=False)["history"]
    ctx.checkpoint_path.unlink()
    if len(history) != 1:
        raise RuntimeError(f"{task_name}: expected one epoch, got {len(history)}")
    last = history[0]
    return {"check": f"{task_name} {dataset}", "model": args.model, "batch": params["batch_size"],
            "updates": last["step"], "ms_per_update": round(1e3 * last["seconds"] / last["step"], 1),
            "images_per_s": last["samples_per_s"], "peak_mem_gib": last.get("peak_mem_gib"),
            "loss": round(last["loss"], 4), "seconds_with_eval": round(seconds, 1),
            "metrics": {r["name"]: round(r["value"], 3) for r in rows}}


def downstream_checks(args) -> list[tuple[str, str, dict]]:
    if args.smoke:  # tiny defaults, one short epoch each
        return [("finetune", "synthetic-objects", {"epochs": 1}),
                ("detection", "synthetic-scenes", {"epochs": 1}),
                ("segmentation", "synthetic-segmentation", {"epochs": 1, "updates": None})]
    return [
        # one epoch of 2,000 images at 224 px, mixup/cutmix on (the paper recipe)
        ("finetune", "synthetic-objects", {"epochs": 1, "batch_size": args.batch, "warmup_epochs": 0}),
        # 300 images at 640-1024 px; 4 images per GPU (ViTDet: 64 over 64 GPUs)
        ("detection", "synthetic-scenes", {"epochs": 1, "batch_size": 4, "warmup_updates": 10}),
        # one epoch of 300 images: BEiT's ADE20k batch (16) on one GPU, 512 px crops
        ("segmentation", "synthetic-segmentation", {"epochs": 1, "updates": None, "warmup_updates": 5}),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: vit-b16 (vit-tiny-32 with --smoke)")
    ap.add_argument("--batch", type=int, default=None, help="images per update per GPU (default 64; 8 with --smoke)")
    ap.add_argument("--steps", type=int, default=10, help="timed updates per method")
    ap.add_argument("--warmup", type=int, default=3, help="untimed updates first")
    ap.add_argument("--distinct", type=int, default=16, help="distinct pre-transformed samples per method")
    ap.add_argument("--workers", type=int, default=None, help="pre-training loader workers (default: the method's)")
    ap.add_argument("--methods", nargs="*", help="only these methods (default: every method that trains)")
    ap.add_argument("--no-downstream", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CPU dry run: tiny model, tiny scale, 2 timed steps")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    args.scale = "tiny" if args.smoke else "paper"
    args.model = args.model or ("vit-tiny-32" if args.smoke else "vit-b16")
    args.batch = args.batch or (8 if args.smoke else 64)
    if args.smoke:
        args.steps, args.warmup = 2, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        props = torch.cuda.get_device_properties(device)
        print(f"{props.name}, {gib(props.total_memory)} GiB, torch {torch.__version__}", flush=True)
    names = [n for n in METHODS.names() if METHODS.get(n).uses_data and (not args.methods or n in args.methods)]
    checks = [(f"pretrain {n}", pretrain_check, (n,)) for n in names]
    if not args.no_downstream:
        checks += [(f"{t} {d}", downstream_check, (t, d, o)) for t, d, o in downstream_checks(args)]
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for label, check, check_args in checks:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            try:
                row = check(*check_args, args, device, Path(tmp))
            except Exception:  # report and go on: one broken check must not hide the others' numbers
                failures += 1
                row = {"check": label, "error": traceback.format_exc(limit=6)}
                print(row["error"], file=sys.stderr, flush=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    print(f"\n{'check':<38}{'batch':>6}{'ms/upd':>9}{'img/s':>9}{'peak GiB':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['check']:<38}  FAILED")
        else:
            print(f"{r['check']:<38}{r['batch']:>6}{r['ms_per_update']:>9}{r['images_per_s']:>9}"
                  f"{r['peak_mem_gib'] if r['peak_mem_gib'] is not None else '-':>10}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
