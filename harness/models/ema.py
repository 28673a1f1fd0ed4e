"""An exponential-moving-average teacher (DINO, BYOL-style methods): a frozen copy of a student module whose
weights follow ``teacher = m * teacher + (1 - m) * student`` after every optimiser step."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off: the teacher starts equal to the student."""
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Parameters move towards the student; buffers (if any) are copied."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student have different parameter lists")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        t_buf.copy_(s_buf)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """DINO's momentum schedule: from ``base`` at step 0 to ``final`` at the end, along a half cosine."""
    progress = min(1.0, step / max(1, total_steps))
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
