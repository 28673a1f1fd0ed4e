"""``supervised``: DeiT's supervised pre-training on the labels of the pre-training set.

DeiT's recipe (``main.py`` of facebookresearch/deit): RandAugment ``rand-m9-mstd0.5-inc1``, random erasing 0.25,
crops from scale 0.08 (timm's ``create_transform``), mixup 0.8 / cutmix 1.0 with label smoothing 0.1 (timm's
``Mixup`` and soft-target cross-entropy), repeated augmentation x3 (timm's ``RepeatAugSampler``), lr 5e-4 x
batch / 512. The tiny scale switches the regularisers off (see ``defaults``; docs/recipes.md says why).
"""

from __future__ import annotations

import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from harness.methods.base import PretrainMethod, register_method
from harness.transforms import build_mixup, classification_train_transform


@register_method("supervised")
class Supervised(PretrainMethod):
    description = "supervised pre-training (DeiT: RandAugment, mixup/cutmix, label smoothing, repeated augmentation)"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    uses_labels = True
    pooling = "cls"  # DeiT classifies from the class token
    relative_cost = 1.0
    exact_under_accumulation = True
    recipe = ("DeiT ViT-S/16 and ViT-B/16: 300 epochs on ImageNet-1k, batch 1024, lr 5e-4 x batch/512 = 1e-3, wd 0.05, "
              "warm-up 5 epochs, RandAugment rand-m9-mstd0.5-inc1, mixup 0.8, cutmix 1.0, label smoothing 0.1, "
              "random erasing 0.25, repeated augmentation x3, crops from 0.08, drop path 0.1")
    # tiny: blr and warm-up from benchmarks/tiny_calibration.py (docs/calibration.md); 93 updates are too short for
    # DeiT's regularisers to pay off, so the tiny scale keeps label smoothing and crops only
    defaults = {
        "tiny": {"batch_size": 64, "blr": 1.6e-2, "lr_ref_batch": 512, "min_lr": 1e-5,
                 "warmup_fraction": 1 / 3, "label_smoothing": 0.1, "drop_path": 0.0, "crop_min_scale": 0.2,
                 "auto_augment": None,
                 "color_jitter": 0.0, "reprob": 0.0, "mixup": 0.0, "cutmix": 0.0, "repeated_aug": 0},
        "paper": {"batch_size": 1024, "blr": 5e-4, "lr_ref_batch": 512, "min_lr": 1e-5, "warmup_epochs": 5,
                  "label_smoothing": 0.1, "drop_path": 0.1, "num_workers": 10, "crop_min_scale": 0.08,
                  "auto_augment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.3, "reprob": 0.25, "mixup": 0.8,
                  "cutmix": 1.0, "repeated_aug": 3},
    }

    def __init__(self, encoder_cfg, params, num_classes=None):
        super().__init__(encoder_cfg, params, num_classes)
        if not num_classes:
            raise ValueError("supervised pre-training needs a labelled pre-training dataset")
        self.head = nn.Linear(encoder_cfg.embed_dim, num_classes)
        self.mixup = build_mixup(params, num_classes)

    def train_transform(self):
        p = self.params
        return classification_train_transform(self.encoder_cfg.img_size, p["crop_min_scale"], p["auto_augment"],
                                              p["color_jitter"], p["reprob"])

    @classmethod
    def accumulation_exact(cls, params):
        return super().accumulation_exact(params) and not (params.get("mixup") or params.get("cutmix"))  # mixes images

    def training_step(self, batch):
        images, labels = batch
        if self.mixup is not None and self.training:
            images, soft = self.mixup(images, labels)
        logits = self.head(self.encoder.forward_head(self.encoder.forward_features(images), pre_logits=True))
        if self.mixup is not None and self.training:
            loss = SoftTargetCrossEntropy()(logits.float(), soft)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.params["label_smoothing"])
        acc = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"acc": acc}
