"""What a downstream task is: given an encoder checkpoint (or none: random init) and a dataset, train what the
task needs and return metric rows ``{name, value, split}`` in the shared schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from harness.models.vit import EncoderConfig
from harness.registry import POOL_FROM_METHOD, Registry, resolve_params  # noqa: F401  (re-exported)


@dataclass
class TaskContext:
    job_dir: Path
    params: dict[str, Any]
    encoder_cfg: EncoderConfig
    encoder_path: Path | None  # None: start from random initialisation
    dataset: str
    seed: int
    device: torch.device
    scale: str
    updates: int = 0  # the updates of the run's schedule, set by ``train_config``; reported in metrics.json

    @property
    def checkpoint_path(self) -> Path:
        from harness.results import CHECKPOINT

        return self.job_dir / CHECKPOINT

    def train_config(self, n_train: int, num_layers: int | None = None):
        """The engine's ``TrainConfig`` for training on ``n_train`` items with this job's parameters; the schedule
        comes from ``harness.schedule``, as the plan computed it."""
        from harness.schedule import downstream_schedule, train_config

        schedule = downstream_schedule(self.params, n_train)
        self.updates = schedule.total_updates
        return train_config(self.params, schedule, self.seed, num_layers)


def metric(name: str, value: float, split: str = "val") -> dict[str, Any]:
    return {"name": name, "value": float(value), "split": split}


class DownstreamTask:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dataset_kind: ClassVar[str] = "classification"
    metric_names: ClassVar[tuple[str, ...]] = ()
    # train-step FLOPs per image / one encoder forward+backward at the encoder's size; used by `plan`
    relative_cost: ClassVar[float] = 1.0
    defaults: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "paper": {}}
    # bump when a change alters what the task measures: it enters every job identity of the task, so results
    # of the old behaviour are not reused (tests/test_fingerprints.py checks it)
    version: ClassVar[int] = 1

    @classmethod
    def resolved_params(cls, scale: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return resolve_params("task", cls.name, cls.defaults, scale, overrides)

    def run(self, ctx: TaskContext) -> list[dict[str, Any]]:
        raise NotImplementedError


TASKS: Registry[type[DownstreamTask]] = Registry("task")


def register_task(name: str):
    """Class decorator: ``@register_task("detection")`` makes the task usable from study files."""
    return TASKS.register_class(name)
