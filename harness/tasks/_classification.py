"""Pieces the classification tasks share: labelled splits, frozen features and top-k evaluation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from harness.data import get_index
from harness.engine import eval_workers
from harness.data.images import ImageListDataset
from harness.models.vit import POOLINGS, build_encoder, encoder_pooling, load_encoder_weights
from harness.tasks.base import POOL_FROM_METHOD, TaskContext, metric
from harness.transforms import eval_transform


def task_pooling(ctx: TaskContext) -> str:
    """The job's ``pool`` param; "method" (a job that `plan` did not resolve) reads the encoder's declaration."""
    pool = ctx.params["pool"]
    if pool != POOL_FROM_METHOD:
        return pool
    return encoder_pooling(ctx.encoder_path) if ctx.encoder_path is not None else "cls"


def labelled_split(dataset: str, split: str, transform) -> ImageListDataset:
    index = get_index(dataset, split)
    if index.labels is None:
        raise ValueError(f"dataset {dataset!r} split {split!r} has no image-level labels")
    return ImageListDataset(index, transform=transform)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Iterable[int]) -> dict[int, int]:
    """How many rows of ``scores`` (N x classes) have their label among the ``k`` highest scores, per k."""
    ks = tuple(ks)
    top = scores.float().topk(max(ks), dim=-1).indices
    return {k: int((top[:, :k] == labels[:, None]).any(dim=-1).sum().item()) for k in ks}


def topk_ks(num_classes: int) -> tuple[int, int]:
    """(1, 5), or (1, num_classes) when there are fewer than five classes."""
    return 1, min(5, num_classes)


def topk_metrics(correct: dict[int, int], total: int) -> list[dict]:
    k1, k5 = sorted(correct)[0], sorted(correct)[-1]
    return [metric("top1", 100 * correct[k1] / max(total, 1)), metric("top5", 100 * correct[k5] / max(total, 1))]


@torch.no_grad()
def topk_accuracy(model: nn.Module, dataset, batch_size: int, device: torch.device, ks=(1, 5)) -> dict[int, float]:
    model.eval()
    correct = {k: 0 for k in ks}
    total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=eval_workers(device)):
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(images)
        for k, c in topk_correct(logits, labels, ks).items():
            correct[k] += c
        total += labels.numel()
    return {k: correct[k] / max(total, 1) for k in ks}


def frozen_encoder(ctx: TaskContext) -> nn.Module:
    """The pre-trained encoder (or a random one), in eval mode with every parameter frozen."""
    encoder = build_encoder(ctx.encoder_cfg)
    if ctx.encoder_path is not None:
        load_encoder_weights(encoder, ctx.encoder_path)
    encoder.requires_grad_(False)
    return encoder.to(ctx.device).eval()


def pool_tokens(tokens: torch.Tensor, pool: str, num_prefix_tokens: int = 1) -> torch.Tensor:
    """One vector per image from the final (normalised) tokens: the cls token, or the mean of the patch tokens."""
    if pool == "cls":
        return tokens[:, 0]
    if pool == "mean":
        return tokens[:, num_prefix_tokens:].mean(dim=1)
    raise ValueError(f"unknown pooling {pool!r} (known: {', '.join(POOLINGS)})")


@torch.no_grad()
def extract_features(encoder: nn.Module, dataset, batch_size: int, device: torch.device,
                     pool: str = "cls") -> tuple[torch.Tensor, torch.Tensor]:
    """Features (float32, on CPU) and labels of a whole split, in dataset order, one pass without augmentation."""
    encoder.eval()
    feats, labels = [], []
    for images, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=eval_workers(device)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            tokens = encoder.forward_features(images.to(device))
        feats.append(pool_tokens(tokens, pool, getattr(encoder, "num_prefix_tokens", 1)).float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels).long()


@dataclass
class FrozenFeatures:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int


def frozen_features(ctx: TaskContext, batch_size: int) -> FrozenFeatures:
    """Train and val features of ``ctx.dataset`` from the frozen encoder (read with the job's pooling), with the
    evaluation transform."""
    pool = task_pooling(ctx)
    encoder = frozen_encoder(ctx)
    transform = eval_transform(ctx.encoder_cfg.img_size)
    train_set = labelled_split(ctx.dataset, "train", transform)
    val_set = labelled_split(ctx.dataset, "val", transform)
    train_x, train_y = extract_features(encoder, train_set, batch_size, ctx.device, pool)
    val_x, val_y = extract_features(encoder, val_set, batch_size, ctx.device, pool)
    return FrozenFeatures(train_x, train_y, val_x, val_y, train_set.num_classes)
