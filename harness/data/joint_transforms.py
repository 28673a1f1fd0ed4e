"""Transforms applied to an image and its dense target together (detection and segmentation datasets).

Contract: a transform is a callable ``(image, target) -> (image, target)`` where ``image`` is a float tensor
``C x H x W`` and ``target`` is either

* a detection target dict (``boxes`` float ``N x 4`` xyxy in pixels, ``labels`` int64 ``N``, ``masks`` uint8
  ``N x H x W``, ...), as ``CocoDetectionDataset`` yields it, or
* a segmentation label map, an int64 tensor ``H x W`` (``IGNORE_INDEX`` = 255 for unlabelled pixels), as
  ``SegmentationDataset`` yields it.

Geometric transforms move the image, boxes, masks and label maps together; masks and labels are resized with
nearest-neighbour interpolation. Randomness comes from ``torch``'s generator, so the engine's seeding applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
Target = dict | torch.Tensor


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def _resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the last two dims of an integer tensor (H x W or N x H x W) with nearest-neighbour sampling."""
    if x.ndim == 2:
        return _resize_nearest(x[None], size)[0]
    if x.shape[0] == 0:
        return x.new_zeros((0, *size))
    return F.interpolate(x[None].float(), size=size, mode="nearest")[0].to(x.dtype)


class Resize:
    """Resize to ``size`` (an int: the shorter side; or ``(h, w)``)."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = size

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, int):
            scale = self.size / min(h, w)
            return max(1, round(h * scale)), max(1, round(w * scale))
        return tuple(self.size)

    def __call__(self, image: torch.Tensor, target: Target):
        h, w = image.shape[-2:]
        nh, nw = self.output_size(h, w)
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        if isinstance(target, torch.Tensor):
            return image, _resize_nearest(target, (nh, nw))
        target = dict(target)
        target["boxes"] = target["boxes"] * torch.tensor([nw / w, nh / h, nw / w, nh / h])
        if "masks" in target:
            target["masks"] = _resize_nearest(target["masks"], (nh, nw))
        if "area" in target:
            target["area"] = target["area"] * (nw * nh) / (w * h)
        return image, target


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: torch.Tensor, target: Target):
        if torch.rand(()) >= self.p:
            return image, target
        image = image.flip(-1)
        if isinstance(target, torch.Tensor):
            return image, target.flip(-1)
        target = dict(target)
        w = image.shape[-1]
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
        target["boxes"] = boxes
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        return image, target


class RandomCrop:
    """Segmentation only: a random ``size x size`` crop; smaller images are padded (label ``IGNORE_INDEX``)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor, target: torch.Tensor):
        if not isinstance(target, torch.Tensor):
            raise TypeError("RandomCrop supports segmentation label maps only")
        h, w = image.shape[-2:]
        ph, pw = max(0, self.size - h), max(0, self.size - w)
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            target = F.pad(target, (0, pw, 0, ph), value=IGNORE_INDEX)
            h, w = image.shape[-2:]
        top = int(torch.randint(0, h - self.size + 1, ()))
        left = int(torch.randint(0, w - self.size + 1, ()))
        return (image[..., top:top + self.size, left:left + self.size],
                target[top:top + self.size, left:left + self.size])


class Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor, target: Target):
        return (image - self.mean) / self.std, target
