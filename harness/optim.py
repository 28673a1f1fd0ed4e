"""The optimiser and schedule every method and task shares: AdamW, warm-up + cosine, weight-decay exclusions,
optional layer-wise lr decay (fine-tuning), gradient clipping."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "dist_token", "reg_token")


def _no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_NAMES)


def vit_layer_id(name: str, num_layers: int) -> int:
    """Depth of a ViT parameter for layer-wise lr decay: embeddings 0, block i -> i+1, everything else last."""
    name = name.split("encoder.", 1)[-1] if "encoder." in name else name
    if name.startswith(("cls_token", "pos_embed", "patch_embed", "mask_token", "reg_token")):
        return 0
    if m := re.match(r"blocks\.(\d+)\.", name):
        return int(m.group(1)) + 1
    return num_layers + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None,
                 num_layers: int | None = None) -> list[dict]:
    """AdamW groups: no decay for biases, norms, positions and tokens; with ``layer_decay``, lr scale
    ``layer_decay ** (num_layers + 1 - depth)`` with BEiT's and MAE's depths (embeddings 0, block i i+1, the rest
    num_layers + 1). timm's ``param_groups_layer_decay`` agrees except for the final norm, which timm puts
    with the last block (scale ``layer_decay``) and both references with the head (scale 1)."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not _no_decay(name, p)
        layer = vit_layer_id(name, num_layers) if layer_decay is not None and num_layers else 0
        scale = layer_decay ** (num_layers + 1 - layer) if layer_decay is not None and num_layers else 1.0
        g = groups.setdefault((layer, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale})
        g["params"].append(p)
    return list(groups.values())


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                    layer_decay: float | None = None, num_layers: int | None = None) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay, layer_decay, num_layers), lr=lr, betas=betas)


def cosine_lr(step: int, total: int, warmup: int, base_lr: float, min_lr: float = 0.0) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def scheduled_lr(step: int, total: int, warmup: int, base_lr: float, min_lr: float = 0.0, decay: str = "cosine",
                 steps: tuple[tuple[float, float], ...] = ()) -> float:
    """Linear warm-up, then ``decay``: ``cosine`` to ``min_lr``; ``poly`` (mmcv's power-1 poly over the whole
    run: ``min_lr + (base_lr - min_lr) * (1 - step / total)``, BEiT's segmentation); ``step``: ``base_lr`` times
    the factor of the last ``(fraction of total, factor)`` passed (detectron2's multi-step, ViTDet)."""
    if decay == "cosine" or step < warmup:
        return cosine_lr(step, total, warmup, base_lr, min_lr)
    if decay == "poly":
        return min_lr + (base_lr - min_lr) * max(0.0, 1.0 - step / max(1, total))
    if decay == "step":
        factors = [factor for fraction, factor in steps if step >= fraction * total]
        return base_lr * (factors[-1] if factors else 1.0)
    raise ValueError(f"unknown lr decay {decay!r}: cosine, poly or step")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Scheduled weight decay for the regularised groups (those excluded from decay stay at 0), as DINO."""
    for g in optimizer.param_groups:
        if g["weight_decay"] > 0:
            g["weight_decay"] = weight_decay
