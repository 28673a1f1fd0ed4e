"""``supervised``: DeiT-style supervised pre-training on the labels of the pre-training set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.base import PretrainMethod, register_method
from harness.transforms import train_transform


@register_method("supervised")
class Supervised(PretrainMethod):
    description = "supervised pre-training (DeiT-style: cross-entropy with label smoothing on a linear head)"
    uses_labels = True
    relative_cost = 1.0
    exact_under_accumulation = True
    recipe = ("DeiT ViT-S/16 and ViT-B/16: 300 epochs on ImageNet-1k, batch 1024, lr 5e-4 x batch/512 = 1e-3, wd 0.05, "
              "warm-up 5 epochs, label smoothing 0.1, drop path 0.1 (DeiT's RandAugment, mixup/cutmix and repeated "
              "augmentation are not used here)")
    defaults = {
        "tiny": {"batch_size": 64, "lr": 2e-3, "warmup_epochs": 1, "label_smoothing": 0.1, "drop_path": 0.0},
        "paper": {"batch_size": 1024, "lr": 1e-3, "warmup_epochs": 5, "label_smoothing": 0.1, "drop_path": 0.1,
                  "num_workers": 10},
    }

    def __init__(self, encoder_cfg, params, num_classes=None):
        super().__init__(encoder_cfg, params, num_classes)
        if not num_classes:
            raise ValueError("supervised pre-training needs a labelled pre-training dataset")
        self.head = nn.Linear(encoder_cfg.embed_dim, num_classes)

    def train_transform(self):
        return train_transform(self.encoder_cfg.img_size)

    def training_step(self, batch):
        images, labels = batch
        logits = self.head(self.encoder.forward_head(self.encoder.forward_features(images), pre_logits=True))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.params["label_smoothing"])
        acc = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"acc": acc}
