"""What a pre-training method is: a module that owns the shared encoder plus its own heads, a transform and a
training step. The engine (``harness/engine.py``) does the rest: data order, optimiser, schedule, checkpoints.

A method declares its hyper-parameter defaults per scale next to its code; a study overrides any of them in
``pretrain.method_params.<method>``. The keys of ``OPTIM_DEFAULTS`` are read by the engine; everything else
is the method's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from harness.models.vit import EncoderConfig, build_encoder
from harness.registry import Registry, resolve_params

# warm-up: ``warmup_fraction`` of the run's updates when set (the tiny scale: each reference's proportion of
# warm-up to training), else ``warmup_epochs`` (the paper scale: the references' epochs);
# ``lr`` None: derived from ``blr`` by the reference's rule, lr = blr x batch_size / lr_ref_batch (a study may set
# ``lr`` itself); ``weight_decay_end``: a cosine weight-decay schedule to that value (DINO), None = constant
OPTIM_DEFAULTS: dict[str, Any] = {
    "batch_size": 64, "blr": None, "lr_ref_batch": 256, "lr": None, "min_lr": 1e-6, "weight_decay": 0.05,
    "weight_decay_end": None, "betas": [0.9, 0.999], "warmup_epochs": 1, "warmup_fraction": None,
    "clip_grad": None,
}


@dataclass
class PretrainData:
    """What a method may know about its pre-training data before training (e.g. to build a tokenizer)."""

    dataset: object  # a torch Dataset of (PIL image, label) pairs: no transform applied
    num_classes: int | None
    cache_key: str  # identifies the exact images (the manifest's hash): key for caches such as vocabularies
    cache_dir: Path


class PretrainMethod(nn.Module):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    uses_data: ClassVar[bool] = True  # False: no pre-training (random init); no data axis
    uses_labels: ClassVar[bool] = False
    # train-step FLOPs / one forward+backward of the encoder over all patches of the batch; used by `plan`
    relative_cost: ClassVar[float] = 1.0
    # True when the loss is a mean over items and no batch statistic changes within an update, so that the
    # engine's gradient accumulation over micro-batches gives the update of the whole batch (docs/slurm.md)
    exact_under_accumulation: ClassVar[bool] = False
    defaults: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "paper": {}}
    # the reference recipe the paper-scale defaults follow (model, epochs, batch size, lr), for `harness methods`
    recipe: ClassVar[str] = ""
    # bump when a change alters what training produces: it enters every job identity of the method, so results
    # of the old behaviour are not reused (tests/test_fingerprints.py checks it)
    version: ClassVar[int] = 1
    # how downstream tasks read the exported encoder: "cls" (class token) or "mean" (mean of the patch tokens);
    # stored in encoder.pt and resolved into every downstream job's params (a study may override it there)
    pooling: ClassVar[str] = "cls"

    def __init__(self, encoder_cfg: EncoderConfig, params: dict[str, Any], num_classes: int | None = None):
        super().__init__()
        self.encoder_cfg, self.params, self.num_classes = encoder_cfg, params, num_classes
        # updates in one epoch of the schedule's reference data (set by the job; 0 when unknown)
        self.updates_per_epoch = 0.0
        self.encoder: VisionTransformer = build_encoder(encoder_cfg, drop_path_rate=params.get("drop_path", 0.0))

    @classmethod
    def resolved_params(cls, scale: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Optimiser defaults, then the method's defaults for ``scale`` (``paper`` for unknown scales), then the study's."""
        return resolve_params("method", cls.name, cls.defaults, scale, overrides, base=OPTIM_DEFAULTS)

    @classmethod
    def accumulation_exact(cls, params: dict[str, Any]) -> bool:
        """Whether gradient accumulation keeps the update of the whole batch with these parameters."""
        return cls.exact_under_accumulation

    def prepare(self, data: PretrainData) -> None:
        """Called once before training with the pre-training data (e.g. build a tokenizer vocabulary)."""

    def train_transform(self) -> Callable:
        raise NotImplementedError

    def collate_fn(self) -> Callable | None:
        return None

    def training_step(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called with the gradients in place, before each update (e.g. DINO freezes its last layer)."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step (e.g. EMA teacher update)."""

    def exported_encoder(self) -> VisionTransformer:
        """The encoder downstream tasks start from."""
        return self.encoder

    def optimized_module(self) -> nn.Module:
        """What the optimiser updates (default: everything; a method with an EMA teacher excludes it)."""
        return self


METHODS: Registry[type[PretrainMethod]] = Registry("method")


def register_method(name: str):
    """Class decorator: ``@register_method("splitmask")`` makes the method usable from study files."""

    return METHODS.register_class(name)
