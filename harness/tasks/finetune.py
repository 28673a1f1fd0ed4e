"""``finetune``: full fine-tuning for image classification with BEiT's recipe (``run_class_finetuning.py``):
the encoder read with its method's pooling (mean of the patch tokens into a new ``fc_norm``, or the class
token), a head initialised at std 0.02 x ``head_init_scale`` 0.001, layer-wise lr decay (per model size),
drop path, RandAugment + random erasing (timm's ``create_transform``), mixup/cutmix with label smoothing
(timm's ``Mixup``), warm-up + cosine, lr = blr x batch / 256. Top-1/top-5."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy

from harness.engine import train
from harness.models.vit import EncoderConfig, build_encoder, load_encoder_weights, timm_global_pool
from harness.tasks._classification import labelled_split, task_pooling, topk_accuracy
from harness.tasks.base import POOL_FROM_METHOD, DownstreamTask, TaskContext, metric, register_task
from harness.transforms import build_mixup, classification_train_transform, eval_transform


def default_layer_decay(cfg: EncoderConfig) -> float:
    """BEiT's and MAE's per-size layer decay: 0.65 for 12-layer ViT-B (ViT-S: the same depth, no published
    value), 0.75 for 24-layer ViT-L and deeper."""
    return 0.75 if cfg.depth >= 24 else 0.65


@register_task("finetune")
class FineTune(DownstreamTask):
    description = "full fine-tuning for classification (BEiT's recipe: layer decay, RandAugment, mixup); top-1/top-5"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    dataset_kind = "classification"
    metric_names = ("top1", "top5")
    defaults = {
        # tiny: 2e-3 at batch 64; 93-155 updates on 32 px images: no RandAugment, erasing or mixup (they pay off
        # over long schedules only), crops from 0.35 (8x8 patches keep the object)
        "tiny": {"epochs": 5, "batch_size": 64, "blr": 8e-3, "lr_ref_batch": 256, "lr": None, "min_lr": 1e-6,
                 "weight_decay": 0.05, "layer_decay": 0.75, "drop_path": 0.0, "label_smoothing": 0.1,
                 "warmup_epochs": None, "warmup_fraction": 20 / 100,  # BEiT: 20 warm-up epochs of 100
                 "mixup": 0.0, "cutmix": 0.0, "clip_grad": None, "pool": POOL_FROM_METHOD,
                 "head_init_scale": 0.001, "crop_min_scale": 0.35, "auto_augment": None, "color_jitter": 0.0,
                 "reprob": 0.0},
        # BEiT ViT-B fine-tuning on ImageNet-1k: lr 4e-3 at batch 1024, 100 epochs, 20 warm-up epochs; layer decay
        # 0.65 for the 12-layer ViT-B and ViT-S (None: per model size, default_layer_decay)
        "paper": {"epochs": 100, "batch_size": 1024, "blr": 1e-3, "lr_ref_batch": 256, "lr": None, "min_lr": 1e-6,
                  "weight_decay": 0.05, "layer_decay": 0.65, "drop_path": 0.1, "label_smoothing": 0.1,
                  "warmup_epochs": 20, "warmup_fraction": None, "mixup": 0.8, "cutmix": 1.0, "clip_grad": None,
                  "pool": POOL_FROM_METHOD,
                  "head_init_scale": 0.001, "crop_min_scale": 0.08, "auto_augment": "rand-m9-mstd0.5-inc1",
                  "color_jitter": 0.4, "reprob": 0.25, "num_workers": 10},
    }

    def run(self, ctx: TaskContext):
        p, cfg = ctx.params, ctx.encoder_cfg
        transform = classification_train_transform(cfg.img_size, p["crop_min_scale"], p["auto_augment"],
                                                   p["color_jitter"], p["reprob"])
        train_set = labelled_split(ctx.dataset, "train", transform)
        val_set = labelled_split(ctx.dataset, "val", eval_transform(cfg.img_size))
        num_classes = train_set.num_classes
        model = build_encoder(cfg, num_classes=num_classes, drop_path_rate=p["drop_path"],
                              global_pool=timm_global_pool(task_pooling(ctx)))
        scale_head(model.head, p["head_init_scale"])
        if ctx.encoder_path is not None:
            load_encoder_weights(model, ctx.encoder_path)
        model.to(ctx.device)
        mixup = build_mixup(p, num_classes)

        def step(batch):
            images, labels = batch
            if mixup is not None:
                images, soft = mixup(images, labels)
                return SoftTargetCrossEntropy()(model(images).float(), soft), {}
            return F.cross_entropy(model(images), labels, label_smoothing=p["label_smoothing"]), {}

        layer_decay = p["layer_decay"] if p["layer_decay"] is not None else default_layer_decay(cfg)
        tc = dataclasses.replace(ctx.train_config(len(train_set), num_layers=cfg.depth), layer_decay=layer_decay)
        state = train(model, step, train_set, tc, ctx.checkpoint_path, desc=f"finetune {ctx.dataset}",
                      device=ctx.device)
        acc = topk_accuracy(model, val_set, p["batch_size"], ctx.device, ks=(1, min(5, num_classes)))
        return [metric("top1", 100 * acc[1]), metric("top5", 100 * acc[min(5, num_classes)]),
                metric("train_loss", state.history[-1]["loss"], "train")]


@torch.no_grad()
def scale_head(head: torch.nn.Module, init_scale: float) -> None:
    """BEiT's ``init_scale``: the head's initial weights and bias (timm: trunc-normal std 0.02, zero) times it."""
    head.weight.mul_(init_scale)
    head.bias.mul_(init_scale)
