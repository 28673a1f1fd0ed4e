"""Loss functions of the pre-training methods, as pure functions (tested on hand-computed cases).
All compute in float32 whatever the autocast dtype of their inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import distributed


def token_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (..., V)`` against discrete ``tokens (...)`` (BEiT/SplitMask MIM loss)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Symmetric InfoNCE (CPC) between two views ``(B, D)``: row i of ``a`` must pick row i of ``b`` among
    the whole global batch (every rank's rows are negatives, gathered with their gradients) and vice versa;
    cosine similarities divided by ``temperature``. The mean over this rank's rows: averaged over the ranks
    (as DDP does with gradients) it is the loss of one process on the global batch."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    all_a, offset = distributed.gather_batch(a)
    all_b, _ = distributed.gather_batch(b)
    labels = torch.arange(a.shape[0], device=a.device) + offset
    return 0.5 * (F.cross_entropy(a @ all_b.t() / temperature, labels)
                  + F.cross_entropy(b @ all_a.t() / temperature, labels))


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO: the teacher's centred and sharpened distribution of each global view is the target of the
    student's distribution of every *other* view; mean over the (teacher view, student view) pairs.

    ``student``: one ``(B, K)`` tensor per view, global views first (same order as ``teacher``).
    """
    targets = [F.softmax((t.float() - center) / teacher_temp, dim=-1).detach() for t in teacher]
    log_probs = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student]
    total, pairs = 0.0, 0
    for iq, q in enumerate(targets):
        for v, log_p in enumerate(log_probs):
            if v == iq:
                continue
            total = total + torch.sum(-q * log_p, dim=-1).mean()
            pairs += 1
    return total / pairs


def normalized_pixel_mse(pred: torch.Tensor, patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's loss: mean squared error against each target patch normalised by its own mean and variance."""
    patches = patches.float()
    var, mean = torch.var_mean(patches, dim=-1, keepdim=True)
    target = (patches - mean) / (var + eps).sqrt()
    return ((pred.float() - target) ** 2).mean()
