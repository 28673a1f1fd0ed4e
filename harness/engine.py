"""The training loop every stage shares: seeded data order, AdamW + cosine, checkpoint at a fixed file name
after every epoch, resume from it, progress bar. One ``train`` call runs a fixed number of updates.

Determinism: the data order of epoch ``e`` comes from ``(seed, e)`` and every RNG state is saved in the
checkpoint, so a run that resumes from a checkpoint ends with the same weights as one that never stopped
(on CPU, with deterministic kernels).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from harness import distributed
from harness.optim import build_optimizer, cosine_lr, set_lr, set_weight_decay
from harness.results import atomic_torch_save

log = logging.getLogger("harness.engine")


@dataclass
class TrainConfig:
    batch_size: int
    total_updates: int
    warmup_updates: int
    lr: float
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = None
    weight_decay_end: float | None = None  # cosine weight-decay schedule to this value (DINO); None: constant
    layer_decay: float | None = None
    num_layers: int | None = None
    seed: int = 0
    num_workers: int = 0
    drop_last: bool = True
    repeated_aug: int = 0  # > 1: each epoch shows every drawn image that many times (DeiT; timm's RepeatAugSampler)


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one row per epoch: mean loss and logs


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_for(preference: str = "auto") -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_loader(dataset: Dataset, cfg: TrainConfig, epoch: int, collate_fn: Callable | None = None) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    batch_size = min(cfg.batch_size, len(dataset))
    sampler = epoch_order(len(dataset), cfg, epoch, g)
    if distributed.active():  # each rank takes its share of every global batch of the same permutation
        batches = [distributed.shard(sampler[i:i + batch_size]) for i in range(0, len(sampler), batch_size)
                   if not cfg.drop_last or i + batch_size <= len(sampler)]
        return DataLoader(dataset, batch_sampler=batches, num_workers=cfg.num_workers, collate_fn=collate_fn,
                          generator=g, persistent_workers=False, pin_memory=torch.cuda.is_available())
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cfg.num_workers,
                      drop_last=cfg.drop_last, collate_fn=collate_fn, generator=g,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


def epoch_order(n: int, cfg: TrainConfig, epoch: int, generator: torch.Generator) -> list[int]:
    """The global order of one epoch's items: a permutation, or timm's repeated-augmentation order (one draw
    of n / repeats images, each ``repeats`` times in a row, so copies share a global batch as in DeiT)."""
    if cfg.repeated_aug > 1:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler = RepeatAugSampler(range(n), num_replicas=1, rank=0, num_repeats=cfg.repeated_aug, selected_round=0)
        sampler.set_epoch(cfg.seed * 1_000_003 + epoch)
        return list(sampler)
    return torch.randperm(n, generator=generator).tolist()


def eval_workers(device: torch.device) -> int:
    """Loader processes for an evaluation pass. Evaluation transforms draw no random numbers, so the count cannot
    change a result and comes from the machine, not from the job's parameters: on GPU the CPUs this process may
    use (at most 8, one left for the main process); on CPU none (spawning costs more than it saves there)."""
    if device.type != "cuda":
        return 0
    return max(0, min(8, len(os.sched_getaffinity(0)) - 1))


def updates_per_epoch(n_items: int, batch_size: int, drop_last: bool = True) -> int:
    bs = min(batch_size, n_items)
    return n_items // bs if drop_last else math.ceil(n_items / bs)


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def train(
    model: nn.Module,
    step_fn: Callable[[object], tuple[torch.Tensor, dict]],
    dataset: Dataset,
    cfg: TrainConfig,
    checkpoint_path: Path,
    desc: str = "train",
    after_step: Callable[[int, int], None] | None = None,
    collate_fn: Callable | None = None,
    device: torch.device | None = None,
    optimizer_model: nn.Module | None = None,
    stop_after_updates: int | None = None,
    before_optimizer_step: Callable[[int, int], None] | None = None,
) -> TrainState:
    """Run ``cfg.total_updates`` optimiser steps of ``step_fn(batch) -> (loss, logs)`` over ``dataset``.

    ``optimizer_model`` restricts what is optimised (default: ``model``). ``stop_after_updates`` stops early
    after that many updates with a checkpoint written (used to test resumption). ``before_optimizer_step(step,
    total)`` runs between the (clipped) gradients and the update (e.g. DINO drops its last layer's gradients).
    """
    device = device or next(model.parameters()).device
    optimizer = build_optimizer(optimizer_model or model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.layer_decay, cfg.num_layers)
    state = TrainState()
    if checkpoint_path.exists():
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = TrainState(ckpt["step"], ckpt["epoch"], ckpt["history"])
        _set_rng_state(ckpt["rng"])
        log.info("resumed from %s at update %d (epoch %d)", checkpoint_path, state.step, state.epoch)
    else:
        seed_everything(cfg.seed)

    def save() -> None:
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": state.step,
                           "epoch": state.epoch, "history": state.history, "rng": _rng_state()}, checkpoint_path)

    use_amp = device.type == "cuda"
    if distributed.active():
        step_fn = _distributed_step(model, step_fn, device)
    bar = tqdm(total=cfg.total_updates, initial=state.step, desc=desc, unit="upd", dynamic_ncols=True,
               disable=os.environ.get("HARNESS_PROGRESS", "1") == "0", mininterval=1.0)
    model.train()
    while state.step < cfg.total_updates:
        t0, sums, count = time.time(), {}, 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if distributed.active():  # rank-specific augmentation streams, reproducible from any epoch boundary
            seed_everything(cfg.seed * 1_000_003 + state.epoch * 1_009 + distributed.rank())
        for batch in epoch_loader(dataset, cfg, state.epoch, collate_fn):
            if state.step >= cfg.total_updates:
                break
            set_lr(optimizer, cosine_lr(state.step, cfg.total_updates, cfg.warmup_updates, cfg.lr, cfg.min_lr))
            if cfg.weight_decay_end is not None:
                set_weight_decay(optimizer, cosine_lr(state.step, cfg.total_updates, 0, cfg.weight_decay,
                                                      cfg.weight_decay_end))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = step_fn(_to_device(batch, device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at update {state.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_((optimizer_model or model).parameters(), cfg.clip_grad)
            if before_optimizer_step is not None:
                before_optimizer_step(state.step, cfg.total_updates)
            optimizer.step()
            state.step += 1
            if after_step is not None:
                after_step(state.step, cfg.total_updates)
            count += 1
            for k, v in {"loss": loss.item(), **logs}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        state.epoch += 1
        seconds = time.time() - t0
        row = {"epoch": state.epoch, "step": state.step, "seconds": round(seconds, 3),
               "samples_per_s": round(count * cfg.batch_size / max(seconds, 1e-9), 2)}  # global batch, all ranks
        if device.type == "cuda":
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        row.update({k: distributed.mean_across_ranks(v / max(count, 1)) for k, v in sums.items()})
        state.history.append(row)
        log.info("epoch %d: %s", state.epoch, row)
        if distributed.is_main():
            save()
        if stop_after_updates is not None and state.step >= stop_after_updates and state.step < cfg.total_updates:
            bar.close()
            raise InterruptedTraining(state.step)
    bar.close()
    return state


class _StepModule(nn.Module):
    """Routes ``step_fn`` through ``forward`` so that DistributedDataParallel sees (and syncs) every step."""

    def __init__(self, model: nn.Module, step_fn: Callable):
        super().__init__()
        self.model, self.step_fn = model, step_fn

    def forward(self, batch):
        return self.step_fn(batch)


def _distributed_step(model: nn.Module, step_fn: Callable, device: torch.device) -> Callable:
    """``step_fn`` behind DistributedDataParallel: gradients are averaged over the ranks in ``backward``.
    ``find_unused_parameters``: a method's step need not touch every parameter (e.g. an unused head)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(_StepModule(model, step_fn), device_ids=device_ids, find_unused_parameters=True)


class InterruptedTraining(RuntimeError):
    """Raised by ``train(stop_after_updates=...)``: a checkpoint was written and training stopped early."""
