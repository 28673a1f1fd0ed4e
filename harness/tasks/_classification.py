"""Pieces the classification tasks share: labelled splits and top-k evaluation."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from harness.data import get_index
from harness.data.images import ImageListDataset


def labelled_split(dataset: str, split: str, transform) -> ImageListDataset:
    index = get_index(dataset, split)
    if index.labels is None:
        raise ValueError(f"dataset {dataset!r} split {split!r} has no image-level labels")
    return ImageListDataset(index, transform=transform)


@torch.no_grad()
def topk_accuracy(model: nn.Module, dataset, batch_size: int, device: torch.device, ks=(1, 5)) -> dict[int, float]:
    model.eval()
    correct = {k: 0 for k in ks}
    total = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(images)
        top = logits.float().topk(max(ks), dim=-1).indices
        for k in ks:
            correct[k] += (top[:, :k] == labels[:, None]).any(dim=-1).sum().item()
        total += labels.numel()
    return {k: correct[k] / max(total, 1) for k in ks}
