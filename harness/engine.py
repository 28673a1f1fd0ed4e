"""The training loop every stage shares: seeded data order, AdamW + cosine, checkpoints on an interval of
updates or wall time (and when the scheduler signals a preemption), resume from them, progress bar. One
``train`` call runs a fixed number of updates.

Determinism: the data order of epoch ``e`` comes from ``(seed, e)`` and every RNG state is saved in the
checkpoint, so a run that resumes from a checkpoint, taken at any update, ends with the same weights as one
that never stopped (on CPU, with deterministic kernels). One data loader serves the whole run, across epoch
boundaries, so its workers start once; with workers, every item's augmentation is seeded from its place in
the run (seed, epoch, position), which keeps a resumed run identical whatever the workers prefetched.

Gradient accumulation (``accum_steps`` k): each update's batch is loaded whole (same data and augmentation as
k = 1) and split into k micro-batches; their losses, weighted by their share of the batch, are back-propagated
one after the other, so the update is the whole batch's wherever the loss is a mean over items.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from harness import checkpoint, distributed
from harness.curves import active as active_curves
from harness.optim import build_optimizer, cosine_lr, scheduled_lr, set_lr, set_weight_decay
from harness.schedule import updates_per_epoch  # noqa: F401  (the schedule module decides schedules)

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
    lr_decay: str = "cosine"  # after the warm-up: cosine, poly or step (harness.optim.scheduled_lr)
    lr_steps: tuple[tuple[float, float], ...] = ()  # step decay: (fraction of the updates, lr factor)
    layer_decay: float | None = None
    num_layers: int | None = None
    seed: int = 0
    num_workers: int = 0
    drop_last: bool = True
    repeated_aug: int = 0  # > 1: each epoch shows every drawn image that many times (DeiT; timm's RepeatAugSampler)
    accum_steps: int = 1  # micro-batches per update; the update stays the whole batch's
    # when to checkpoint (also at the end and on the preemption signal); the cadence never changes a result
    checkpoint_every_updates: int = field(default_factory=lambda: _env_number("HARNESS_CHECKPOINT_UPDATES", 1000))
    checkpoint_every_s: float = field(default_factory=lambda: 60 * _env_number("HARNESS_CHECKPOINT_MINUTES", 30))


def _env_number(var: str, default: float) -> float:
    value = os.environ.get(var, "")
    return float(value) if value else default


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


def epoch_order(n: int, cfg: TrainConfig, epoch: int, generator: torch.Generator | None = None) -> list[int]:
    """The global order of one epoch's items: a permutation, or timm's repeated-augmentation order (one draw
    of n / repeats images, each ``repeats`` times in a row, so copies share a global batch as in DeiT)."""
    if cfg.repeated_aug > 1:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler = RepeatAugSampler(range(n), num_replicas=1, rank=0, num_repeats=cfg.repeated_aug, selected_round=0)
        sampler.set_epoch(cfg.seed * 1_000_003 + epoch)
        return list(sampler)
    generator = generator or torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def item_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the item at ``position`` of epoch ``epoch``'s order (loaders with workers)."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + position) % 2**63


class RunSampler:
    """This rank's indices for every update from ``start_step`` to ``total_updates``, epoch after epoch.

    ``on_epoch_start(epoch)`` runs just before the first batch of an epoch is taken (in the main process: with
    no workers, right before that batch is loaded). ``seeded``: yield ``(index, item_seed)`` pairs instead."""

    def __init__(self, n_items: int, cfg: TrainConfig, start_step: int, seeded: bool = False,
                 on_epoch_start: Callable[[int], None] | None = None):
        self.n, self.cfg, self.start, self.seeded, self.on_epoch_start = n_items, cfg, start_step, seeded, on_epoch_start
        self.batch_size = min(cfg.batch_size, n_items)
        self.per_epoch = updates_per_epoch(n_items, cfg.batch_size, cfg.drop_last)

    def __len__(self) -> int:
        return max(0, self.cfg.total_updates - self.start)

    def __iter__(self) -> Iterator[list]:
        step, bs = self.start, self.batch_size
        while step < self.cfg.total_updates:
            epoch, offset = divmod(step, self.per_epoch)
            order = epoch_order(self.n, self.cfg, epoch)
            for b in range(offset, self.per_epoch):
                if step >= self.cfg.total_updates:
                    return
                if b == 0 and self.on_epoch_start is not None:
                    self.on_epoch_start(epoch)
                positions = distributed.shard(list(range(b * bs, min((b + 1) * bs, self.n))))
                yield [(order[p], item_seed(self.cfg.seed, epoch, p)) if self.seeded else order[p] for p in positions]
                step += 1


class SeededItems(Dataset):
    """``dataset[(index, seed)]``: the item drawn with every RNG (python, numpy, torch) seeded from ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.default_generator.manual_seed(seed)  # the CPU generator only: torch.manual_seed costs 100x more
        return self.dataset[index]


def _ignore_scheduler_signals(worker_id: int) -> None:
    """Loader workers leave SIGTERM and the preemption signal to the main process: SLURM signals every process
    of a job step, and a worker killed by them would fail the job instead of letting it checkpoint."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(PREEMPTION_SIGNAL, signal.SIG_IGN)


def run_loader(dataset: Dataset, cfg: TrainConfig, start_step: int, collate_fn: Callable | None = None,
               on_epoch_start: Callable[[int], None] | None = None) -> DataLoader:
    """One loader for every update from ``start_step`` on: its workers start once, not at every epoch."""
    seeded = cfg.num_workers > 0
    sampler = RunSampler(len(dataset), cfg, start_step, seeded, None if seeded else on_epoch_start)
    # a generator of its own: the loader's base seed must not come from (and advance) the global RNG
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start_step)
    return DataLoader(SeededItems(dataset) if seeded else dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                      collate_fn=collate_fn, generator=g, pin_memory=torch.cuda.is_available(),
                      prefetch_factor=2 if cfg.num_workers else None,
                      worker_init_fn=_ignore_scheduler_signals if cfg.num_workers else None)


def eval_workers(device: torch.device) -> int:
    """Loader processes for an evaluation pass. Evaluation transforms draw no random numbers, so the count cannot
    change a result and comes from the machine, not from the job's parameters: on GPU the CPUs this process may
    use (at most 8, one left for the main process); on CPU none (spawning costs more than it saves there)."""
    if device.type != "cuda":
        return 0
    return max(0, min(8, len(os.sched_getaffinity(0)) - 1))


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def micro_batches(batch, k: int) -> list:
    """``batch`` split into ``k`` parts along the item axis of every tensor in it (lists, tuples, dicts kept)."""
    if k == 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        return list(batch.tensor_split(k))
    if isinstance(batch, (list, tuple)):
        parts = [micro_batches(b, k) for b in batch]
        return [type(batch)(p[i] for p in parts) for i in range(k)]
    if isinstance(batch, dict):
        parts = {key: micro_batches(v, k) for key, v in batch.items()}
        return [{key: p[i] for key, p in parts.items()} for i in range(k)]
    return [batch] * k


def _items(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return len(batch)
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    return next((n for n in (_items(v) for v in values) if n), 0)


class Cadence:
    """When to checkpoint: every ``every_updates`` updates (0: never on a count) or ``every_s`` seconds."""

    def __init__(self, every_updates: int, every_s: float):
        self.every_updates, self.every_s, self.last = int(every_updates), every_s, time.monotonic()

    def due(self, step: int) -> bool:
        by_count = self.every_updates > 0 and step % self.every_updates == 0
        return by_count or (self.every_s > 0 and time.monotonic() - self.last >= self.every_s)

    def saved(self) -> None:
        self.last = time.monotonic()


# the signal a scheduler sends before preempting or timing out a job (submitit's default)
PREEMPTION_SIGNAL = signal.SIGUSR2


@contextlib.contextmanager
def deferred_preemption() -> Iterator[dict]:
    """Hold the preemption signal until the end of the current update: its handler (submitit's requeue,
    which exits) then runs after the engine has written a checkpoint of a consistent state. Yields a dict
    whose ``"pending"`` holds the signal's frame once it came."""
    request: dict = {}
    previous = signal.getsignal(PREEMPTION_SIGNAL)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield request
        return

    def hold(signum, frame):
        request["pending"] = (signum, frame)

    signal.signal(PREEMPTION_SIGNAL, hold)
    request["handler"] = previous
    try:
        yield request
    finally:
        signal.signal(PREEMPTION_SIGNAL, previous)


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
    state, sums, count = TrainState(), {}, 0
    if (ckpt := checkpoint.load(checkpoint_path)) is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = TrainState(ckpt["step"], ckpt["epoch"], ckpt["history"])
        sums, count = dict(ckpt.get("epoch_sums", {})), ckpt.get("epoch_count", 0)
        checkpoint.set_rng_state(ckpt["rng"])
        log.info("resumed from %s at update %d (epoch %d)", checkpoint_path, state.step, state.epoch)
    else:
        seed_everything(cfg.seed)
    per_epoch = updates_per_epoch(len(dataset), cfg.batch_size, cfg.drop_last)
    cadence = Cadence(cfg.checkpoint_every_updates, cfg.checkpoint_every_s)

    def save() -> None:
        if distributed.is_main():
            checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": state.step,
                             "epoch": state.epoch, "history": state.history, "epoch_sums": sums,
                             "epoch_count": count, "rng": checkpoint.rng_state()}, checkpoint_path)
        cadence.saved()

    def reseed_ranks(epoch: int) -> None:  # rank-specific augmentation streams, reproducible from any epoch start
        seed_everything(cfg.seed * 1_000_003 + epoch * 1_009 + distributed.rank())

    use_amp = device.type == "cuda"
    ddp = distributed.active()
    if ddp:
        step_fn = _distributed_step(model, step_fn, device)
    curves = active_curves()  # records nothing outside a job and on ranks other than 0
    bar = tqdm(total=cfg.total_updates, initial=state.step, desc=desc, unit="upd", dynamic_ncols=True,
               disable=os.environ.get("HARNESS_PROGRESS", "1") == "0", mininterval=1.0)
    model.train()
    t0 = time.time()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loader = run_loader(dataset, cfg, state.step, collate_fn, reseed_ranks if ddp else None)
    with deferred_preemption() as preemption:
        for batch in loader:
            if ddp and cfg.num_workers and state.step % per_epoch == 0:
                reseed_ranks(state.step // per_epoch)
            set_lr(optimizer, scheduled_lr(state.step, cfg.total_updates, cfg.warmup_updates, cfg.lr, cfg.min_lr,
                                           cfg.lr_decay, cfg.lr_steps))
            if cfg.weight_decay_end is not None:
                set_weight_decay(optimizer, cosine_lr(state.step, cfg.total_updates, 0, cfg.weight_decay,
                                                      cfg.weight_decay_end))
            loss, logs, grad_norm = _update(step_fn, _to_device(batch, device), optimizer, cfg, state.step, use_amp,
                                            (optimizer_model or model).parameters(), curves, before_optimizer_step)
            state.step += 1
            _record(curves, state.step, cfg, batch, loss, logs, optimizer, grad_norm)
            if after_step is not None:
                after_step(state.step, cfg.total_updates)
            count += 1
            for k, v in {"loss": loss, **logs}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.update()
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if state.step % per_epoch == 0 or state.step == cfg.total_updates:
                state.epoch += 1
                state.history.append(_epoch_row(state, sums, count, time.time() - t0, cfg, device))
                log.info("epoch %d: %s", state.epoch, state.history[-1])
                t0, sums, count = time.time(), {}, 0
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
            stopping = stop_after_updates is not None and state.step >= stop_after_updates
            if state.step == cfg.total_updates or stopping or "pending" in preemption or cadence.due(state.step):
                save()
            if "pending" in preemption:
                log.info("preemption signal: checkpoint written at update %d", state.step)
                bar.close()
                preemption["handler"](*preemption.pop("pending"))  # submitit: requeue, then exit
            if stopping and state.step < cfg.total_updates:
                bar.close()
                raise InterruptedTraining(state.step)
    bar.close()
    return state


# a key of a step's logs: what its loss is a mean over (default: the items of the batch), e.g. masked tokens
LOSS_ITEMS = "loss_items"


def _update(step_fn: Callable, batch, optimizer, cfg: TrainConfig, step: int, use_amp: bool,
            params: Iterator[nn.Parameter], curves, before_optimizer_step: Callable | None
            ) -> tuple[float, dict, torch.Tensor | None]:
    """One optimiser step over ``batch`` in ``cfg.accum_steps`` micro-batches; returns its loss, its logs and
    the gradient norm (when clipped, or when the curves record this update).

    Micro-batch i's loss is a mean over w_i things (``LOSS_ITEMS``, default its items); its gradient enters with
    weight w_i / sum(w), so the sum is the gradient of the whole batch's mean. The sum is known at the last
    micro-batch: the gradients gathered so far are divided by it just before the last backward, which (under
    DDP) is the one that averages over the ranks."""
    params = [p for p in params if p.requires_grad]
    parts = micro_batches(batch, cfg.accum_steps)
    optimizer.zero_grad(set_to_none=True)
    weights, losses, logs_list = [], [], []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(step_fn, "no_sync") else step_fn.no_sync()
        with sync:
            with torch.autocast("cuda" if use_amp else "cpu", dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = step_fn(part)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at update {step}")
            logs = dict(logs)
            weights.append(float(logs.pop(LOSS_ITEMS, _items(part) or 1)))
            losses.append(loss.item())
            logs_list.append(logs)
            if len(parts) == 1:
                loss.backward()
            elif not last:
                (loss * weights[-1]).backward()
            else:
                total = sum(weights)
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(total)
                (loss * (weights[-1] / total)).backward()
    grad_norm = None
    if cfg.clip_grad:
        grad_norm = nn.utils.clip_grad_norm_(params, cfg.clip_grad)
    elif curves.due(step + 1, cfg.total_updates):
        grad_norm = nn.utils.get_total_norm(p.grad for p in params if p.grad is not None)
    if before_optimizer_step is not None:
        before_optimizer_step(step, cfg.total_updates)
    optimizer.step()
    if len(parts) == 1:
        return losses[0], logs_list[0], grad_norm
    total = sum(weights)
    mean_logs = {k: sum(float(lg[k]) * w for lg, w in zip(logs_list, weights)) / total for k in logs_list[0]}
    return sum(v * w for v, w in zip(losses, weights)) / total, mean_logs, grad_norm


def _batch_images(batch) -> int:
    """Images in a batch (a rank's share under DDP): every batch here ends with one label or target per image."""
    last = batch[-1] if isinstance(batch, (list, tuple)) and batch else batch
    if isinstance(last, torch.Tensor):
        return int(last.shape[0]) if last.dim() else 0
    return len(last) if isinstance(last, (list, tuple)) else 0


def _record(curves, step: int, cfg: TrainConfig, batch, loss: float, logs: dict, optimizer, grad_norm) -> None:
    images = _batch_images(batch) * distributed.world_size()
    if not curves.due(step, cfg.total_updates):
        curves.train_step(step, cfg.total_updates, images, {})
        return
    scalars = {"loss": float(loss), **{k: float(v) for k, v in logs.items()},
               "lr": max(g["lr"] for g in optimizer.param_groups)}
    if grad_norm is not None:
        scalars["grad_norm"] = float(grad_norm)
    curves.train_step(step, cfg.total_updates, images, scalars)


def _epoch_row(state: TrainState, sums: dict, count: int, seconds: float, cfg: TrainConfig,
               device: torch.device) -> dict:
    row = {"epoch": state.epoch, "step": state.step, "seconds": round(seconds, 3),
           "samples_per_s": round(count * cfg.batch_size / max(seconds, 1e-9), 2)}  # global batch, all ranks
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    row.update({k: distributed.mean_across_ranks(v / max(count, 1)) for k, v in sums.items()})
    return row


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
