"""COCO AP of perfect and empty predictions, and mIoU/mAcc/aAcc on hand-built label maps."""

from __future__ import annotations

import math

import pytest
import torch

from harness.tasks._coco_eval import coco_evaluate, coco_from_targets, detections_to_coco
from harness.tasks._seg_metrics import ConfusionTotals


def _scene(image_id: int) -> dict:
    masks = torch.zeros(3, 40, 48, dtype=torch.uint8)
    masks[0, 2:12, 3:15] = 1
    masks[1, 20:38, 10:30] = 1
    masks[2, 5:25, 30:46] = 1
    boxes = torch.tensor([[3.0, 2, 15, 12], [10, 20, 30, 38], [30, 5, 46, 25]])
    return {"boxes": boxes, "labels": torch.tensor([1, 2, 1]), "masks": masks, "image_id": image_id}


def _as_output(target: dict, scores=None) -> dict:
    n = len(target["labels"])
    scores = scores if scores is not None else torch.ones(n)
    return {"boxes": target["boxes"], "labels": target["labels"], "scores": scores,
            "masks": target["masks"][:, None].float()}


def test_perfect_predictions_score_100_and_empty_ones_0():
    targets = [_scene(1), _scene(7)]
    gt = coco_from_targets(targets, [(40, 48)] * 2, num_classes=2)
    perfect = [r for t in targets for r in detections_to_coco(_as_output(t), t["image_id"], coco_ids=(1, 2))]
    values, _ = coco_evaluate(gt, perfect)
    assert set(values) == {"bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"}
    assert all(v == pytest.approx(100.0) for v in values.values()), values
    empty, _ = coco_evaluate(gt, [])
    assert all(v == 0.0 for v in empty.values()), empty


def test_half_of_the_objects_found_gives_an_ap_between():
    targets = [_scene(1)]
    gt = coco_from_targets(targets, [(40, 48)], num_classes=2)
    out = _as_output(targets[0])
    keep = torch.tensor([True, False, False])  # one of the two class-1 objects, no class-2 object
    found = {k: v[keep] for k, v in out.items()}
    values, _ = coco_evaluate(gt, detections_to_coco(found, 1, coco_ids=(1, 2)))
    # class 1: recall 0.5 at precision 1 -> AP ~ 0.5 (101-point interpolation: 51/101); class 2: 0
    assert values["bbox_AP"] == pytest.approx(100 * 0.5 * 51 / 101, abs=0.01)
    assert values["segm_AP50"] == pytest.approx(values["bbox_AP50"])


def test_category_ids_map_back_through_coco_ids():
    target = _scene(3)
    out = detections_to_coco(_as_output(target), 3, coco_ids=(11, 42))
    assert [r["category_id"] for r in out] == [11, 42, 11]
    assert out[1]["bbox"] == [10.0, 20.0, 20.0, 18.0]


def test_miou_macc_aacc_match_a_hand_computation():
    ignore = 255
    label = torch.tensor([[0, 0, 1, 1],
                          [0, 0, 1, 1],
                          [2, 2, ignore, ignore]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 0, 1, 3],
                         [2, 0, 3, 3]])
    # second image: only class 1 labelled, predicted everywhere as 1 except one pixel
    label2 = torch.tensor([[1, 1], [1, 1]])
    pred2 = torch.tensor([[1, 1], [1, 0]])
    totals = ConfusionTotals(num_classes=5)
    totals.update(pred, label)
    totals.update(pred2, label2)
    # summed over both images (ignored pixels count nowhere):
    # class 0: I = 3, pred area = 3 + 1 + 1 = 5, label area = 4 -> U = 6
    # class 1: I = 3 + 3 = 6, pred area = 4 + 3 = 7, label area = 4 + 4 = 8 -> U = 9
    # class 2: I = 1, pred = 1, label = 2 -> U = 2
    # class 3: I = 0, pred = 1 (the one non-ignored pixel), label = 0 -> U = 1 (IoU 0, no accuracy)
    # class 4: never predicted nor labelled -> excluded from both means
    iou = [3 / 6, 6 / 9, 1 / 2, 0.0]
    acc = [3 / 4, 6 / 8, 1 / 2]
    values = totals.metrics()
    assert values["mIoU"] == pytest.approx(100 * sum(iou) / 4)
    assert values["mAcc"] == pytest.approx(100 * sum(acc) / 3)
    assert values["aAcc"] == pytest.approx(100 * 10 / 14)
    assert not math.isnan(values["mIoU"])


def test_confusion_totals_reject_out_of_range_labels():
    with pytest.raises(ValueError):
        ConfusionTotals(num_classes=2).update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 3))
