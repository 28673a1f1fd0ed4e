"""``knn``: weighted k-nearest-neighbour classification on frozen features, as DINO reports it.

Features are L2-normalised; each validation image takes the ``k`` training images of highest cosine similarity
``s`` and each of them votes for its class with weight ``exp(s / T)`` (DINO: k=20, T=0.07). Top-1/top-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.tasks._classification import frozen_features, topk_correct, topk_ks, topk_metrics
from harness.tasks.base import POOL_FROM_METHOD, DownstreamTask, TaskContext, register_task


@torch.no_grad()
def knn_scores(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, num_classes: int, k: int = 20,
               temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores (queries x classes): the sum of ``exp(cos / T)`` over the ``k`` nearest training features."""
    train_x = F.normalize(train_x.float(), dim=1)
    k = min(k, len(train_x))
    out = []
    for start in range(0, len(query_x), chunk):
        q = F.normalize(query_x[start:start + chunk].float(), dim=1)
        sims, idx = (q @ train_x.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        out.append(torch.zeros(len(q), num_classes).scatter_add_(1, train_y[idx], weights))
    return torch.cat(out)


@register_task("knn")
class KNN(DownstreamTask):
    description = "weighted k-NN on frozen features (cosine, k=20, T=0.07, as DINO); top-1/top-5"
    dataset_kind = "classification"
    metric_names = ("top1", "top5")
    relative_cost = 0.34  # one forward per image, no training
    defaults = {
        "tiny": {"k": 20, "temperature": 0.07, "pool": POOL_FROM_METHOD, "feature_batch_size": 128},
        "paper": {"k": 20, "temperature": 0.07, "pool": POOL_FROM_METHOD, "feature_batch_size": 256},
    }

    def run(self, ctx: TaskContext):
        p = ctx.params
        f = frozen_features(ctx, p["feature_batch_size"])
        scores = knn_scores(f.train_x, f.train_y, f.val_x, f.num_classes, p["k"], p["temperature"])
        return topk_metrics(topk_correct(scores, f.val_y, topk_ks(f.num_classes)), len(f.val_y))
