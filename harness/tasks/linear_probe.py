"""``linear_probe``: a linear classifier on frozen encoder features (cls token or mean-pooled patch tokens).

The encoder never trains, so the features of each split are computed once, without augmentation, and the head
trains on them with the shared engine. The head is a single ``nn.Linear`` (no BatchNorm); the features are
standardised with the training split's mean and standard deviation, a fixed affine map folded into nothing
that learns. Top-1/top-5 on the validation split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from harness.engine import train
from harness.tasks._classification import frozen_features, topk_correct, topk_ks, topk_metrics
from harness.tasks.base import POOL_FROM_METHOD, DownstreamTask, TaskContext, metric, register_task


class LinearHead(nn.Module):
    """``(x - mean) / std`` with fixed statistics, then one linear layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.fc = nn.Linear(mean.numel(), num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc((features - self.mean) / self.std)


@register_task("linear_probe")
class LinearProbe(DownstreamTask):
    description = "linear classifier on frozen features (cls or mean-pooled tokens, no BatchNorm); top-1/top-5"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    dataset_kind = "classification"
    metric_names = ("top1", "top5")
    # one encoder forward per image (1/3 of a training step) once, whatever the number of head epochs
    relative_cost = 0.34 / 90
    defaults = {
        "tiny": {"epochs": 30, "batch_size": 256, "blr": 3e-3, "lr_ref_batch": 256, "lr": None, "min_lr": 0.0,
                 "weight_decay": 0.0, "warmup_epochs": None, "warmup_fraction": 10 / 90,  # MAE: 10 of 90
                 "pool": POOL_FROM_METHOD, "standardize": True,
                 "feature_batch_size": 128},
        # 90 epochs as MAE's linear probe; AdamW instead of LARS/SGD (the shared engine's optimiser);
        # lr = blr x batch / 256: 3e-3 at batch 256 (tiny), 1e-3 at batch 1024 (paper)
        "paper": {"epochs": 90, "batch_size": 1024, "blr": 2.5e-4, "lr_ref_batch": 256, "lr": None, "min_lr": 0.0,
                  "weight_decay": 0.0, "warmup_epochs": 10, "warmup_fraction": None, "pool": POOL_FROM_METHOD,
                  "standardize": True,
                  "feature_batch_size": 256},
    }

    def run(self, ctx: TaskContext):
        p = ctx.params
        f = frozen_features(ctx, p["feature_batch_size"])
        head, state = train_linear_head(f.train_x, f.train_y, f.num_classes, p, ctx)
        with torch.no_grad():
            scores = head(f.val_x.to(ctx.device)).cpu()
        rows = topk_metrics(topk_correct(scores, f.val_y, topk_ks(f.num_classes)), len(f.val_y))
        return rows + [metric("train_loss", state.history[-1]["loss"], "train")]


def train_linear_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, p: dict, ctx: TaskContext):
    if p["standardize"]:
        mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    else:
        mean, std = torch.zeros(features.shape[1]), torch.ones(features.shape[1])
    head = LinearHead(mean, std, num_classes).to(ctx.device)
    data = TensorDataset(features, labels)
    tc = ctx.train_config(len(data))

    def step(batch):
        x, y = batch
        return F.cross_entropy(head(x), y), {}

    state = train(head, step, data, tc, ctx.checkpoint_path, desc=f"linear_probe {ctx.dataset}", device=ctx.device)
    return head.eval(), state
