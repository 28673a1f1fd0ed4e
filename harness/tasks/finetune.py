"""``finetune``: full fine-tuning for image classification with the usual ViT recipe
(layer-wise lr decay, drop path, label smoothing, mixup/cutmix where enabled, warm-up + cosine). Top-1/top-5."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.engine import train
from harness.models.vit import build_encoder, load_encoder_weights
from harness.tasks._classification import labelled_split, topk_accuracy
from harness.tasks.base import DownstreamTask, TaskContext, metric, register_task
from harness.transforms import eval_transform, train_transform


@register_task("finetune")
class FineTune(DownstreamTask):
    description = "full fine-tuning for classification (layer decay, drop path, label smoothing); top-1/top-5"
    dataset_kind = "classification"
    metric_names = ("top1", "top5")
    defaults = {
        "tiny": {"epochs": 5, "batch_size": 64, "lr": 2e-3, "min_lr": 1e-6, "weight_decay": 0.05,
                 "layer_decay": 0.75, "drop_path": 0.0, "label_smoothing": 0.1, "warmup_epochs": 1,
                 "mixup": 0.0, "cutmix": 0.0, "clip_grad": None},
        # BEiT/MAE ViT-B fine-tuning recipe
        "paper": {"epochs": 100, "batch_size": 1024, "lr": 4e-3, "min_lr": 1e-6, "weight_decay": 0.05,
                  "layer_decay": 0.65, "drop_path": 0.1, "label_smoothing": 0.1, "warmup_epochs": 5,
                  "mixup": 0.8, "cutmix": 1.0, "clip_grad": None, "num_workers": 10},
    }

    def run(self, ctx: TaskContext):
        p, cfg = ctx.params, ctx.encoder_cfg
        train_set = labelled_split(ctx.dataset, "train", train_transform(cfg.img_size, min_scale=0.35))
        val_set = labelled_split(ctx.dataset, "val", eval_transform(cfg.img_size))
        num_classes = train_set.num_classes
        model = build_encoder(cfg, num_classes=num_classes, drop_path_rate=p["drop_path"])
        if ctx.encoder_path is not None:
            load_encoder_weights(model, ctx.encoder_path)
        model.to(ctx.device)

        mixup = None
        if p["mixup"] > 0 or p["cutmix"] > 0:
            from timm.data import Mixup

            mixup = Mixup(mixup_alpha=p["mixup"], cutmix_alpha=p["cutmix"], label_smoothing=p["label_smoothing"],
                          num_classes=num_classes)

        def step(batch):
            images, labels = batch
            if mixup is not None:
                images, soft = mixup(images, labels)
                loss = torch.sum(-soft * F.log_softmax(model(images), dim=-1), dim=-1).mean()
            else:
                loss = F.cross_entropy(model(images), labels, label_smoothing=p["label_smoothing"])
            return loss, {}

        tc = ctx.train_config(len(train_set), num_layers=cfg.depth)
        state = train(model, step, train_set, tc, ctx.checkpoint_path, desc=f"finetune {ctx.dataset}", device=ctx.device)
        acc = topk_accuracy(model, val_set, p["batch_size"], ctx.device, ks=(1, min(5, num_classes)))
        return [metric("top1", 100 * acc[1]), metric("top5", 100 * acc[min(5, num_classes)]),
                metric("train_loss", state.history[-1]["loss"], "train")]
