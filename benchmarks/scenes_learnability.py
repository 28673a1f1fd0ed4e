"""Is ``synthetic-scenes`` learnable? Train a small torchvision Mask R-CNN (a 5-stage
conv backbone + 64-channel FPN, random init) on it on
CPU for a few minutes and report COCO bbox/segm AP on val (a sanity check of the data, not a harness task).

    PYTHONPATH=. python benchmarks/scenes_learnability.py [--epochs 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from harness.data import joint_transforms as JT
from harness.data.coco_detection import CocoDetectionDataset, collate_detection


class TinyBackbone(torch.nn.Module):
    """Five stride-2 conv stages (strides 4..32 kept) + FPN with 64 channels: small enough for a CPU."""

    def __init__(self, out_channels: int = 64):
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        widths = (32, 48, 64, 96, 128)
        layers, c_in = [], 3
        for w in widths:
            layers.append(torch.nn.Sequential(
                torch.nn.Conv2d(c_in, w, 3, 2, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True),
                torch.nn.Conv2d(w, w, 3, 1, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True)))
            c_in = w
        self.stages = torch.nn.ModuleList(layers)
        self.fpn = FeaturePyramidNetwork(list(widths[1:]), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x):
        from collections import OrderedDict

        feats = OrderedDict()
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k >= 1:
                feats[str(k - 1)] = x
        return self.fpn(feats)


def build_model(num_classes: int):
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    c = 64
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    return MaskRCNN(TinyBackbone(c), rpn_anchor_generator=anchors, min_size=96, max_size=96,
                    box_head=TwoMLPHead(c * 7 * 7, 256), box_predictor=FastRCNNPredictor(256, num_classes + 1),
                    mask_head=MaskRCNNHeads(c, (c, c), 1), mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1),
                    rpn_batch_size_per_image=128, box_batch_size_per_image=128, box_detections_per_img=20)


@torch.no_grad()
def evaluate(model, ds: CocoDetectionDataset) -> dict[str, float]:
    model.eval()
    results = []
    for images, targets in DataLoader(ds, batch_size=8, collate_fn=collate_detection):
        for out, t in zip(model(images), targets):
            for box, score, label, mask in zip(out["boxes"], out["scores"], out["labels"], out["masks"]):
                x0, y0, x1, y1 = box.tolist()
                rle = mask_utils.encode(np.asfortranarray((mask[0] > 0.5).numpy().astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                results.append({"image_id": t["image_id"], "category_id": ds.categories.coco_id(int(label)),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score), "segmentation": rle})
    if not results:
        return {"bbox_AP": 0.0, "segm_AP": 0.0}
    metrics = {}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = ds.coco.loadRes(results)
        for iou_type in ("bbox", "segm"):
            ev = COCOeval(ds.coco, dt, iou_type)
            ev.evaluate(), ev.accumulate(), ev.summarize()
            metrics[f"{iou_type}_AP"] = float(ev.stats[0])
            metrics[f"{iou_type}_AP50"] = float(ev.stats[1])
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train = CocoDetectionDataset("synthetic-scenes", "train", transform=JT.RandomHorizontalFlip())
    val = CocoDetectionDataset("synthetic-scenes", "val")
    model = build_model(train.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = args.epochs * int(np.ceil(len(train) / args.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        losses = []
        for images, targets in DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collate_detection):
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.3f} ({time.time() - start:.0f} s)", flush=True)
    print({k: round(v, 3) for k, v in evaluate(model, val).items()}, f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
