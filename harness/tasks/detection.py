"""``detection``: Mask R-CNN with a ViTDet-style plain-ViT backbone (``harness.models.vitdet``), fine-tuned from
the pre-trained encoder (or from random initialisation), evaluated with pycocotools: box and mask AP, AP50, AP75
in percent on the val split.

Recipe at paper scale (ViTDet, Li et al. 2022, ViT-B): AdamW lr 1e-4 at batch 64, weight decay 0.1, layer-wise lr
decay 0.7, drop path 0.1, 100 epochs, 1024 input. Differences, stated: multi-scale short-side training (sizes
drawn by torchvision's transform) and horizontal flips instead of large-scale jitter, global attention in every
block instead of windows + 4 global blocks, no relative position biases.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from pycocotools.coco import COCO
from torch.utils.data import DataLoader, Dataset

from harness.engine import eval_workers, train
from harness.models.vit import load_encoder_weights
from harness.models.vitdet import DetectorConfig, build_maskrcnn
from harness.tasks._coco_eval import coco_evaluate, detections_to_coco
from harness.tasks.base import DownstreamTask, TaskContext, metric, register_task

log = logging.getLogger("harness.tasks.detection")

DETECTOR_KEYS = ("train_sizes", "test_size", "max_size", "strides", "fpn_channels", "anchor_sizes", "rpn_conv_depth",
                 "box_head_convs", "box_head_fc", "mask_head_convs", "drop_path", "detections_per_image",
                 "rpn_batch_per_image", "box_batch_per_image")


def collate_detection(batch):
    return tuple(list(x) for x in zip(*batch))


def detector_config(params: dict[str, Any], num_classes: int) -> DetectorConfig:
    fields = {k: tuple(params[k]) if isinstance(params[k], list) else params[k] for k in DETECTOR_KEYS}
    return DetectorConfig(num_classes=num_classes, **fields)


@torch.no_grad()
def predict_coco(model: torch.nn.Module, dataset: Dataset, coco_ids, device: torch.device,
                 batch_size: int = 4) -> list[dict]:
    """Run the detector over ``dataset`` (original image sizes) and return COCO result entries."""
    model.eval()
    results = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_detection,
                        num_workers=eval_workers(device))
    for images, targets in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs = model([im.to(device) for im in images])
        for out, target in zip(outputs, targets):
            results += detections_to_coco(out, int(target["image_id"]), coco_ids)
    return results


def train_and_evaluate(ctx: TaskContext, train_set: Dataset, val_set: Dataset, gt: COCO, coco_ids,
                       num_classes: int) -> list[dict]:
    p = ctx.params
    model = build_maskrcnn(ctx.encoder_cfg, detector_config(p, num_classes))
    if ctx.encoder_path is not None:
        load_encoder_weights(model.backbone.vit.encoder, ctx.encoder_path)
    model.to(ctx.device)

    def step(batch):
        images, targets = batch
        targets = [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets]
        losses = model(list(images), targets)
        return sum(losses.values()), {k: v.item() for k, v in losses.items()}

    tc = ctx.train_config(len(train_set), num_layers=ctx.encoder_cfg.depth)
    state = train(model, step, train_set, tc, ctx.checkpoint_path, desc=f"detection {ctx.dataset}",
                  collate_fn=collate_detection, device=ctx.device)
    results = predict_coco(model, val_set, coco_ids, ctx.device, p["eval_batch_size"])
    values, summary = coco_evaluate(gt, results)
    log.info("COCO evaluation (%d detections):\n%s", len(results), summary)
    last = state.history[-1]
    return ([metric(name, value) for name, value in values.items()]
            + [metric("train_loss", last["loss"], "train")])


@register_task("detection")
class Detection(DownstreamTask):
    description = "Mask R-CNN with a ViTDet simple-pyramid ViT backbone; COCO box/mask AP, AP50, AP75"
    dataset_kind = "detection"
    metric_names = ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75")
    # per image vs one encoder step at its pre-training size: (1024/224)^2 more tokens and the detector heads
    relative_cost = 25.0
    defaults = {
        # synthetic-scenes (96 px images, objects of 15-40 px) seen at 64 px: a small detector that trains in
        # about 5 CPU-minutes (one thread) and reaches a clearly non-zero AP from random initialisation
        "tiny": {"epochs": 10, "batch_size": 8, "lr": 4e-4, "min_lr": 1e-6, "weight_decay": 0.05,
                 "layer_decay": 0.8, "warmup_updates": 50, "clip_grad": 1.0, "num_workers": 0,
                 "eval_batch_size": 8, "train_sizes": [56, 64, 72], "test_size": 64, "max_size": 72,
                 "strides": [4, 8, 16, 32], "fpn_channels": 64, "anchor_sizes": [12, 24, 48, 96, 192],
                 "rpn_conv_depth": 1, "box_head_convs": [], "box_head_fc": 256, "mask_head_convs": [32, 32],
                 "drop_path": 0.0, "detections_per_image": 50, "rpn_batch_per_image": 128,
                 "box_batch_per_image": 64},
        # ViTDet's ViT-B COCO recipe (see the module docstring for the differences)
        "paper": {"epochs": 100, "batch_size": 64, "lr": 1e-4, "min_lr": 0.0, "weight_decay": 0.1,
                  "layer_decay": 0.7, "warmup_updates": 250, "clip_grad": None, "num_workers": 8,
                  "eval_batch_size": 8, "train_sizes": list(range(640, 1025, 32)), "test_size": 1024,
                  "max_size": 1024, "strides": [4, 8, 16, 32], "fpn_channels": 256,
                  "anchor_sizes": [32, 64, 128, 256, 512], "rpn_conv_depth": 2, "box_head_convs": [256] * 4,
                  "box_head_fc": 1024, "mask_head_convs": [256] * 4, "drop_path": 0.1,
                  "detections_per_image": 100, "rpn_batch_per_image": 256, "box_batch_per_image": 512},
    }

    def run(self, ctx: TaskContext):
        from harness.data.coco_detection import CocoDetectionDataset
        from harness.data.joint_transforms import RandomHorizontalFlip

        train_set = CocoDetectionDataset(ctx.dataset, "train", transform=RandomHorizontalFlip())
        val_set = CocoDetectionDataset(ctx.dataset, "val")
        return train_and_evaluate(ctx, train_set, val_set, val_set.coco, val_set.categories.coco_ids,
                                  train_set.num_classes)
