"""COCO box and mask evaluation with pycocotools: detections -> COCO result entries -> AP, AP50, AP75 (percent).

Ground truth is a ``pycocotools.coco.COCO`` object (the split's instances JSON); predicted labels are contiguous
1..K and map back to COCO category ids through ``coco_ids`` (label ``k`` is ``coco_ids[k - 1]``, the sorted
category ids, as ``harness.data.coco_detection.CocoCategories`` defines them).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_TYPES = ("bbox", "segm")
# COCOeval.stats positions of AP@[.5:.95], AP@.5, AP@.75
STAT_NAMES = {"AP": 0, "AP50": 1, "AP75": 2}


def encode_mask(mask: np.ndarray) -> dict:
    """A binary H x W mask as compressed RLE with a JSON-friendly ``counts`` string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detections_to_coco(output: dict[str, torch.Tensor], image_id: int, coco_ids: Sequence[int],
                       mask_threshold: float = 0.5) -> list[dict]:
    """One image's torchvision detections (boxes xyxy, labels, scores, masks N x 1 x H x W) as COCO results."""
    boxes = output["boxes"].detach().float().cpu().numpy()
    scores = output["scores"].detach().float().cpu().numpy()
    labels = output["labels"].detach().cpu().numpy()
    masks = None
    if "masks" in output:
        masks = (output["masks"].detach().float().cpu()[:, 0] > mask_threshold).numpy()
    results = []
    for i in range(len(boxes)):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        entry = {"image_id": int(image_id), "category_id": int(coco_ids[int(labels[i]) - 1]),
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[i])}
        if masks is not None:
            entry["segmentation"] = encode_mask(masks[i])
        results.append(entry)
    return results


def _results_object(gt: COCO, results: list[dict], iou_type: str) -> COCO:
    """``gt.loadRes(results)``; an empty result list (which ``loadRes`` rejects) becomes an empty result set."""
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes([r for r in results if iou_type == "bbox" or "segmentation" in r])
    empty = COCO()
    empty.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                     "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def coco_evaluate(gt: COCO, results: list[dict], iou_types: Sequence[str] = IOU_TYPES) -> tuple[dict[str, float], str]:
    """``{bbox_AP, bbox_AP50, bbox_AP75, segm_AP, ...}`` in percent over every image of ``gt``, and the
    COCOeval summary text. With no detection at all every AP is 0 (precision is 0 at every recall)."""
    metrics, summaries = {}, []
    for iou_type in iou_types:
        if iou_type == "segm" and results and not any("segmentation" in r for r in results):
            raise ValueError("segm evaluation needs masks in the detections")
        dt = _results_object(gt, results, iou_type)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.params.imgIds = sorted(gt.getImgIds())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        summaries.append(f"{iou_type}:\n{out.getvalue()}")
        for name, pos in STAT_NAMES.items():
            # COCOeval reports -1 when no ground truth exists at all for the setting; keep it out of percent
            value = float(evaluator.stats[pos])
            metrics[f"{iou_type}_{name}"] = 100.0 * value if value >= 0 else float("nan")
    return metrics, "\n".join(summaries)


def coco_from_targets(targets: Sequence[dict], image_sizes: Sequence[tuple[int, int]], num_classes: int) -> COCO:
    """A ground-truth COCO object from in-memory targets (boxes xyxy, labels 1..K, optional masks, image_id);
    categories 1..K, so ``coco_ids = range(1, K + 1)``. For tests and hand-built data."""
    images, annotations = [], []
    for target, (h, w) in zip(targets, image_sizes):
        image_id = int(target["image_id"])
        images.append({"id": image_id, "height": int(h), "width": int(w), "file_name": f"{image_id}.png"})
        for i, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist())):
            x0, y0, x1, y1 = box
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
            if "masks" in target:
                mask = target["masks"][i].numpy()
                ann["segmentation"] = encode_mask(mask)
                ann["area"] = float(mask.sum())
            annotations.append(ann)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": k, "name": f"class{k}"} for k in range(1, num_classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt
