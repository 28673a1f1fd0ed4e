"""Training schedules, decided in one place for every stage: how many updates a job runs and how many of them
warm up. The plan resolves each job's schedule with these functions (so ``plan`` and the compute estimate know
every job's updates) and the worker builds its ``TrainConfig`` with the very same functions at run time.

Pre-training counts updates from the study's grid (``fixed-updates``: as many as ``epochs`` over the full
dataset would take, whatever the fraction; ``fixed-epochs``: ``epochs`` over the subset). A downstream task
counts them from its parameters: ``updates`` when given, else ``epochs`` over its training split. Warm-up, for
every stage, from the first of these that is set: ``warmup_updates`` (tasks; at most half of the run),
``warmup_fraction`` (a share of the run's updates: the tiny scale keeps each reference's proportion of warm-up to
training, whatever its length) or ``warmup_epochs`` (the references' own unit, used at the paper scale). A task
without ``epochs`` or ``updates`` (k-NN) trains nothing. This module imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def updates_per_epoch(n_items: int, batch_size: int, drop_last: bool = True) -> int:
    bs = min(batch_size, n_items)
    return n_items // bs if drop_last else math.ceil(n_items / bs)


@dataclass(frozen=True)
class Schedule:
    total_updates: int
    warmup_updates: int
    batch_size: int
    images: int  # training images the job reads (one pass for a task that trains nothing)

    def to_dict(self) -> dict[str, Any]:
        return {"total_updates": self.total_updates, "warmup_updates": self.warmup_updates,
                "batch_size": self.batch_size, "images": self.images}


WARMUP_KEYS = ("warmup_updates", "warmup_fraction", "warmup_epochs")  # the first one set decides


def warmup_updates(params: dict[str, Any], total: int, per_epoch: int) -> int:
    """The warm-up of a run of ``total`` updates, ``per_epoch`` of them an epoch, from its parameters."""
    if params.get("warmup_updates") is not None:
        return min(int(params["warmup_updates"]), total // 2)
    if params.get("warmup_fraction") is not None:
        return int(round(float(params["warmup_fraction"]) * total))
    return int(round((params.get("warmup_epochs") or 0) * per_epoch))


def pretrain_schedule(n_full: int, n_subset: int, batch_size: int, epochs: int, mode: str,
                      params: dict[str, Any]) -> dict[str, Any]:
    """The ``schedule`` entry of a pre-training job's configuration (part of its identity)."""
    reference = n_full if mode == "fixed-updates" else n_subset
    per_epoch = updates_per_epoch(reference, batch_size)
    total = epochs * per_epoch
    return {
        "mode": mode, "epochs": epochs, "total_updates": total,
        "warmup_updates": warmup_updates(params, total, per_epoch),
        "subset_epochs": round(total / updates_per_epoch(n_subset, batch_size), 2),
    }


def downstream_schedule(params: dict[str, Any], n_train: int) -> Schedule:
    """A downstream task's schedule from its parameters and the size of its training split."""
    batch_size = int(params.get("batch_size", 1))
    if params.get("updates") is None and params.get("epochs") is None:
        return Schedule(0, 0, batch_size, n_train)
    per_epoch = updates_per_epoch(n_train, batch_size)
    total = int(params.get("updates") or params["epochs"] * per_epoch)
    return Schedule(total, warmup_updates(params, total, per_epoch), batch_size, total * min(batch_size, n_train))


def job_schedule(job_config: dict[str, Any], n_train: int | None = None) -> Schedule | None:
    """Any planned job's schedule: a pre-training job's from its configuration, a downstream job's from its
    parameters and ``n_train``; None for a job without data (random init) or of unknown size."""
    params = job_config.get("params", {})
    if job_config.get("stage") == "pretrain":
        sched = job_config.get("schedule")
        if sched is None:
            return None
        batch = int(params.get("batch_size", 1))
        return Schedule(sched["total_updates"], sched["warmup_updates"], batch, sched["total_updates"] * batch)
    return None if n_train is None else downstream_schedule(params, n_train)


def train_config(params: dict[str, Any], schedule: Schedule, seed: int, num_layers: int | None = None,
                 accum_steps: int = 1):
    """The engine's ``TrainConfig`` from a job's parameters and schedule (optional parameters take the
    engine's defaults); ``accum_steps``: micro-batches per update (a resource, not a parameter)."""
    from harness.engine import TrainConfig

    optional: dict[str, Any] = {}
    if "betas" in params:
        optional["betas"] = tuple(params["betas"])
    if "min_lr" in params:
        optional["min_lr"] = params["min_lr"]
    if "weight_decay" in params:
        optional["weight_decay"] = params["weight_decay"]
    if params.get("weight_decay_end") is not None:
        optional["weight_decay_end"] = params["weight_decay_end"]
    if params.get("lr_decay"):
        optional["lr_decay"] = params["lr_decay"]
        optional["lr_steps"] = tuple(tuple(s) for s in params.get("lr_steps") or ())
    if params.get("repeated_aug"):
        optional["repeated_aug"] = int(params["repeated_aug"])
    return TrainConfig(batch_size=schedule.batch_size, total_updates=schedule.total_updates,
                       warmup_updates=schedule.warmup_updates, lr=params["lr"], clip_grad=params.get("clip_grad"),
                       layer_decay=params.get("layer_decay"), num_layers=num_layers, seed=seed,
                       num_workers=int(params.get("num_workers") or 0), accum_steps=accum_steps,
                       **optional)
