"""Semantic segmentation metrics as mmsegmentation computes them over a whole split.

Per class ``c``, summed over every image: intersection ``I_c`` (pixels predicted c and labelled c), union
``U_c`` (predicted c or labelled c), and label area ``L_c``; pixels labelled ``ignore_index`` count nowhere.
IoU_c = I_c / U_c, Acc_c = I_c / L_c; mIoU and mAcc are their means over the classes where they are defined
(U_c > 0, resp. L_c > 0), aAcc = sum I / sum L. All in percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE_INDEX = 255


@dataclass
class ConfusionTotals:
    num_classes: int
    ignore_index: int = IGNORE_INDEX
    intersection: torch.Tensor = field(init=False)
    union: torch.Tensor = field(init=False)
    label_area: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.intersection = torch.zeros(self.num_classes, dtype=torch.float64)
        self.union = torch.zeros(self.num_classes, dtype=torch.float64)
        self.label_area = torch.zeros(self.num_classes, dtype=torch.float64)

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        """Add one image (or a batch): integer class maps of the same shape."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape")
        valid = label != self.ignore_index
        pred, lab = prediction[valid].long().cpu(), label[valid].long().cpu()
        if lab.numel() and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise ValueError(f"labels outside 0..{self.num_classes - 1} (and not {self.ignore_index})")
        k = self.num_classes
        inter = torch.bincount(pred[pred == lab], minlength=k)[:k]
        pred_area = torch.bincount(pred.clamp(0, k - 1), minlength=k)[:k]
        label_area = torch.bincount(lab, minlength=k)[:k]
        self.intersection += inter
        self.union += pred_area + label_area - inter
        self.label_area += label_area

    def metrics(self) -> dict[str, float]:
        iou = self.intersection / self.union  # NaN where the class is neither predicted nor labelled
        acc = self.intersection / self.label_area  # NaN where the class is never labelled
        return {"mIoU": 100 * float(iou.nanmean()), "mAcc": 100 * float(acc.nanmean()),
                "aAcc": 100 * float(self.intersection.sum() / self.label_area.sum().clamp_min(1))}
