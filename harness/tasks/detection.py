"""``detection``: Mask R-CNN with a ViTDet-style plain-ViT backbone (``harness.models.vitdet``), fine-tuned from
the pre-trained encoder (or from random initialisation), evaluated with pycocotools: box and mask AP, AP50, AP75
in percent on the val split.

Recipe at paper scale (ViTDet, Li et al. 2022, ViT-B): AdamW lr 1e-4 at batch 64, weight decay 0.1, layer-wise lr
decay 0.7, drop path 0.1, 100 epochs, 1024 input, large-scale jitter (0.1-2.0) + 1024 crops + flips (the table
with sources is in docs/recipes.md). Differences, stated: global attention in every block instead of windows +
4 global blocks, no relative position biases. The tiny scale decays by a cosine and trains on
multi-scale short sides (``train_sizes``, drawn by torchvision's transform) and flips, without jitter.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
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


class LargeScaleJitter:
    """Joint transform, ViTDet's large-scale jitter: resize (aspect kept) to fit ``size x size`` times U(lo, hi)
    (detectron2's ResizeScale), crop a random window of at most ``size x size`` (FixedSizeCrop), recompute the
    boxes from the cropped masks and drop emptied instances (``recompute_boxes``), zero-pad bottom-right to
    ``size x size`` (the backbone's ``square_pad``)."""

    def __init__(self, size: int, scale_range: tuple[float, float]):
        self.size, self.scale_range = size, scale_range

    def __call__(self, image: torch.Tensor, target: dict):
        from torchvision.ops import masks_to_boxes

        from harness.data.joint_transforms import Resize

        h, w = image.shape[-2:]
        scale = float(torch.empty(()).uniform_(*self.scale_range)) * self.size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        image, target = Resize((nh, nw))(image, target)
        ch, cw = min(nh, self.size), min(nw, self.size)
        y0, x0 = int(torch.randint(nh - ch + 1, ())), int(torch.randint(nw - cw + 1, ()))
        masks = target["masks"][:, y0:y0 + ch, x0:x0 + cw]
        keep = (masks.flatten(1) > 0).any(1)
        n = len(keep)
        target = {k: v[keep] if isinstance(v, torch.Tensor) and v.ndim and len(v) == n else v
                  for k, v in target.items()}
        masks = masks[keep]
        boxes = masks_to_boxes(masks)
        boxes[:, 2:] += 1  # pixel indices -> continuous coordinates of the covered area
        pad = (0, self.size - cw, 0, self.size - ch)
        target.update(boxes=boxes, masks=F.pad(masks, pad), area=masks.flatten(1).sum(1).float())
        return F.pad(image[:, y0:y0 + ch, x0:x0 + cw], pad), target


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
                  # ViTDet's MultiStepParamScheduler: x0.1 at 163889 and x0.01 at 177546 of 184375 updates
                  "lr_decay": "step", "lr_steps": [[163889 / 184375, 0.1], [177546 / 184375, 0.01]],
                  "layer_decay": 0.7, "warmup_updates": 250, "clip_grad": None, "num_workers": 8,
                  "eval_batch_size": 8, "train_sizes": [1024], "test_size": 1024, "max_size": 1024,
                  "lsj_scale_range": [0.1, 2.0],  # ViTDet's coco_loader_lsj.py: ResizeScale(0.1, 2.0) + 1024 crop
                  "strides": [4, 8, 16, 32], "fpn_channels": 256,
                  "anchor_sizes": [32, 64, 128, 256, 512], "rpn_conv_depth": 2, "box_head_convs": [256] * 4,
                  "box_head_fc": 1024, "mask_head_convs": [256] * 4, "drop_path": 0.1,
                  "detections_per_image": 100, "rpn_batch_per_image": 256, "box_batch_per_image": 512},
    }

    def run(self, ctx: TaskContext):
        from harness.data.coco_detection import CocoDetectionDataset

        train_set = CocoDetectionDataset(ctx.dataset, "train", transform=train_augmentation(ctx.params))
        val_set = CocoDetectionDataset(ctx.dataset, "val")
        return train_and_evaluate(ctx, train_set, val_set, val_set.coco, val_set.categories.coco_ids,
                                  train_set.num_classes)


def train_augmentation(p: dict):
    """Horizontal flips, then ViTDet's large-scale jitter where ``lsj_scale_range`` is set (the flip first, as
    ViTDet's loader)."""
    from harness.data.joint_transforms import Compose, RandomHorizontalFlip

    if not p.get("lsj_scale_range"):
        return RandomHorizontalFlip()
    return Compose([RandomHorizontalFlip(), LargeScaleJitter(p["max_size"], tuple(p["lsj_scale_range"]))])
