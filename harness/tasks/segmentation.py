"""``segmentation``: semantic segmentation with UperNet on the ViT (``harness.models.upernet``), trained with the
ADE20k conventions (labels 0..K-1 after "reduce zero label", 255 ignored), evaluated over the whole val split by
mIoU, mAcc and aAcc (``harness.tasks._seg_metrics``) at the labels' original resolution.

Recipe at paper scale (BEiT's ADE20k UperNet for self-supervised ViT-B, ``..._pt.py``; the table with sources is
in docs/recipes.md): AdamW lr 7e-4 (absolute, as in the reference), batch 16, 160k updates (~127 epochs of
ADE20k's 20,210 images), 512 crops after a random rescale of the short side by 0.5-2.0 x 512, flips, layer-wise
lr decay 0.65, weight decay 0.05, drop path 0.1, 1500 warm-up updates, UperHead width 768; evaluation by 512
windows 341 apart over the image resized to short side 512 (long side <= 2048); crops in which one class covers
< 75% of the pixels (up to 10 tries), photometric distortion; an auxiliary FCN head (256 wide, loss weight 0.4)
in training. Differences, stated: LayerNorm instead of SyncBatchNorm in the adapter, BatchNorm (not synced) in
the heads. The tiny scale decays by a cosine, evaluates whole images (no ``test_stride``) and keeps
plain crops without photometric distortion or auxiliary head.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from harness.engine import eval_workers, train
from harness.models.upernet import SegmenterConfig, ViTUperNet
from harness.models.vit import load_encoder_weights
from harness.tasks._seg_metrics import IGNORE_INDEX, ConfusionTotals
from harness.tasks.base import DownstreamTask, TaskContext, metric, register_task
from harness.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("harness.tasks.segmentation")


class Normalized(torch.nn.Module):
    """Images in [0, 1] -> ImageNet-normalised -> ``model``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor, **kwargs):
        return self.model((images - self.mean) / self.std, **kwargs)


class RandomShortSideScale:
    """Joint transform: resize so the short side is ``base * U(lo, hi)`` (mmseg's RandomResize, ratio_range)."""

    def __init__(self, base: int, ratio_range: tuple[float, float]):
        self.base, self.ratio_range = base, ratio_range

    def __call__(self, image, label):
        from harness.data.joint_transforms import Resize

        lo, hi = self.ratio_range
        size = max(1, round(self.base * float(torch.empty(()).uniform_(lo, hi))))
        return Resize(size)(image, label)


class CategoryCappedCrop:
    """Joint transform, mmseg's ``RandomCrop(cat_max_ratio=...)``: up to 10 random crops, the first in which no
    class covers ``cap`` or more of the labelled pixels (and more than one class is present) is kept, else the
    last."""

    def __init__(self, size: int, cap: float, tries: int = 10):
        from harness.data.joint_transforms import RandomCrop

        self.crop, self.cap, self.tries = RandomCrop(size), cap, tries

    def __call__(self, image: torch.Tensor, label: torch.Tensor):
        for _ in range(self.tries):
            cropped, cropped_label = self.crop(image, label)
            _, counts = torch.unique(cropped_label[cropped_label != IGNORE_INDEX], return_counts=True)
            if len(counts) > 1 and counts.max() < self.cap * counts.sum():
                break
        return cropped, cropped_label


class PhotometricDistortion:
    """Joint transform after mmseg's ``PhotoMetricDistortion`` on images in [0, 1], each step with probability
    0.5: brightness + U(-32, 32)/255, contrast x U(0.5, 1.5) (before or after the colour steps, at random),
    saturation x U(0.5, 1.5), hue shifted by up to 18/180 of the circle. Saturation blends with the grey image
    (torchvision) instead of scaling the HSV channel."""

    def __call__(self, image: torch.Tensor, label: torch.Tensor):
        import torchvision.transforms.functional as TF

        def coin() -> bool:
            return bool(torch.rand(()) < 0.5)

        def uniform(lo: float, hi: float) -> float:
            return float(torch.empty(()).uniform_(lo, hi))

        if coin():
            image = (image + uniform(-32, 32) / 255).clamp(0, 1)
        contrast_first = coin()
        if contrast_first and coin():
            image = (image * uniform(0.5, 1.5)).clamp(0, 1)
        if coin():
            image = TF.adjust_saturation(image, uniform(0.5, 1.5))
        if coin():
            image = TF.adjust_hue(image, int(torch.randint(-18, 19, ())) / 180)
        if not contrast_first and coin():
            image = (image * uniform(0.5, 1.5)).clamp(0, 1)
        return image, label


def _resized_padded(image: torch.Tensor, test_size: int, max_size: int | None,
                    multiple: int) -> tuple[torch.Tensor, int, int]:
    """``image`` resized to short side ``test_size`` (long side at most ``max_size``, as mmseg's keep-ratio
    Resize), zero-padded to a multiple of ``multiple``; with the resized height and width."""
    h, w = image.shape[-2:]
    scale = test_size / min(h, w)
    if max_size is not None:
        scale = min(scale, max_size / max(h, w))
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)
    return F.pad(x, (0, (-nw) % multiple, 0, (-nh) % multiple)), nh, nw


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """mmseg's slide grid: windows ``stride`` apart, the last one flush with the end."""
    count = max(length - window + stride - 1, 0) // stride + 1
    return sorted({max(min(i * stride, length - window), 0) for i in range(count)})


def _sliding_logits(model: torch.nn.Module, x: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Logits of ``x`` (1 x 3 x H x W) averaged over overlapping ``window`` crops (mmseg ``mode='slide'``)."""
    H, W = x.shape[-2:]
    wh, ww = min(window, H), min(window, W)
    total, count = None, torch.zeros(1, 1, H, W, device=x.device)
    for y in _window_starts(H, wh, stride):
        for xs in _window_starts(W, ww, stride):
            logits = model(x[..., y:y + wh, xs:xs + ww]).float()
            if total is None:
                total = torch.zeros(1, logits.shape[1], H, W, device=x.device)
            total[..., y:y + wh, xs:xs + ww] += logits
            count[..., y:y + wh, xs:xs + ww] += 1
    return total / count


@torch.no_grad()
def predict_map(model: torch.nn.Module, image: torch.Tensor, test_size: int, multiple: int,
                max_size: int | None = None, slide: tuple[int, int] | None = None) -> torch.Tensor:
    """Class map (H x W, the image's own size) from the image resized to short side ``test_size`` and
    zero-padded to a multiple of ``multiple``: one pass over the whole image, or with ``slide`` = (window,
    stride) logits averaged over overlapping windows; logits are cropped, resized back bilinearly, argmaxed."""
    h, w = image.shape[-2:]
    x, nh, nw = _resized_padded(image, test_size, max_size, multiple)
    logits = model(x).float() if slide is None else _sliding_logits(model, x, *slide)
    return F.interpolate(logits[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0)


def evaluate_segmentation(model: torch.nn.Module, dataset: Dataset, num_classes: int, device: torch.device,
                          test_size: int, multiple: int, max_size: int | None = None,
                          slide: tuple[int, int] | None = None) -> dict[str, float]:
    model.eval()
    totals = ConfusionTotals(num_classes, IGNORE_INDEX)
    for image, label in DataLoader(dataset, batch_size=None, shuffle=False, num_workers=eval_workers(device)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            prediction = predict_map(model, image.to(device), test_size, multiple, max_size, slide)
        totals.update(prediction.cpu(), label)
    return totals.metrics()


def train_and_evaluate(ctx: TaskContext, train_set: Dataset, val_set: Dataset, num_classes: int) -> list[dict]:
    p = ctx.params
    indices = tuple(p["block_indices"]) if p["block_indices"] else None
    seg = SegmenterConfig(num_classes=num_classes, strides=tuple(p["strides"]), block_indices=indices,
                          decoder_channels=p["decoder_channels"], dropout=p["dropout"], drop_path=p["drop_path"],
                          aux_channels=p.get("aux_channels") or 0)
    aux_weight = p.get("aux_loss_weight") or 0.0
    net = ViTUperNet(ctx.encoder_cfg, seg)
    if ctx.encoder_path is not None:
        load_encoder_weights(net.encoder, ctx.encoder_path)
    model = Normalized(net).to(ctx.device)

    def step(batch):
        images, labels = batch
        if not aux_weight:
            return F.cross_entropy(model(images), labels, ignore_index=IGNORE_INDEX), {}
        logits, aux_logits = model(images, with_aux=True)
        main = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        aux = F.cross_entropy(aux_logits, labels, ignore_index=IGNORE_INDEX)
        return main + aux_weight * aux, {"loss_main": main.item(), "loss_aux": aux.item()}

    tc = ctx.train_config(len(train_set), num_layers=ctx.encoder_cfg.depth)
    state = train(model, step, train_set, tc, ctx.checkpoint_path, desc=f"segmentation {ctx.dataset}",
                  device=ctx.device)
    # the paper scale slides crop-size windows (BEiT's test_cfg); a scale without `test_stride` sees whole images
    slide = (p["crop_size"], p["test_stride"]) if p.get("test_stride") else None
    values = evaluate_segmentation(model, val_set, num_classes, ctx.device, p["test_size"], max(p["strides"]),
                                   p.get("test_max_size"), slide)
    log.info("segmentation on %s: %s", ctx.dataset, values)
    return [metric(k, v) for k, v in values.items()] + [metric("train_loss", state.history[-1]["loss"], "train")]


@register_task("segmentation")
class Segmentation(DownstreamTask):
    description = "UperNet on a ViT multi-scale adapter (BEiT style); mIoU, mAcc, aAcc over the val split"
    dataset_kind = "segmentation"
    metric_names = ("mIoU", "mAcc", "aAcc")
    relative_cost = 8.0  # 512 crops: (512/224)^2 more tokens, plus the decoder
    defaults = {
        # synthetic-segmentation: 64 px images; a small decoder that trains in minutes on CPU
        "tiny": {"epochs": 8, "updates": None, "batch_size": 8, "lr": 5e-4, "min_lr": 1e-6, "weight_decay": 0.05,
                 "layer_decay": 0.8, "warmup_updates": 30, "num_workers": 0, "crop_size": 64, "test_size": 64,
                 "ratio_range": [0.75, 1.5], "strides": [4, 8, 16, 32], "block_indices": None,
                 "decoder_channels": 64, "dropout": 0.1, "drop_path": 0.0},
        # BEiT's ADE20k recipe for ViT-B (160k updates at batch 16)
        "paper": {"epochs": None, "updates": 160000, "batch_size": 16, "lr": 7e-4, "min_lr": 0.0,
                  "lr_decay": "poly",  # mmcv's poly, power 1
                  "weight_decay": 0.05, "layer_decay": 0.65, "warmup_updates": 1500, "num_workers": 8,
                  "crop_size": 512, "test_size": 512, "ratio_range": [0.5, 2.0], "strides": [4, 8, 16, 32],
                  "test_max_size": 2048, "test_stride": 341,  # BEiT's test_cfg: mode='slide', stride (341, 341)
                  "cat_max_ratio": 0.75, "photometric_distortion": True,  # BEiT's ade20k.py train pipeline
                  "aux_channels": 256, "aux_loss_weight": 0.4,  # BEiT's auxiliary FCNHead on the stride-16 level
                  "block_indices": [3, 5, 7, 11],  # BEiT's out_indices for 12 blocks
                  "decoder_channels": 768,  # BEiT's ADE20k configs set the UperHead's channels to the ViT width
                  "dropout": 0.1, "drop_path": 0.1},
    }

    def run(self, ctx: TaskContext):
        from harness.data.segmentation import SegmentationDataset

        train_set = SegmentationDataset(ctx.dataset, "train", transform=train_augmentation(ctx.params))
        val_set = SegmentationDataset(ctx.dataset, "val")
        return train_and_evaluate(ctx, train_set, val_set, train_set.num_classes)


def train_augmentation(p: dict):
    """Random short-side rescale, crop (class-capped where ``cat_max_ratio`` is set), flip, and photometric
    distortion where ``photometric_distortion`` is on (the order of BEiT's ADE20k pipeline)."""
    from harness.data.joint_transforms import Compose, RandomCrop, RandomHorizontalFlip

    crop = CategoryCappedCrop(p["crop_size"], p["cat_max_ratio"]) if p.get("cat_max_ratio") else \
        RandomCrop(p["crop_size"])
    steps = [RandomShortSideScale(p["crop_size"], tuple(p["ratio_range"])), crop, RandomHorizontalFlip()]
    return Compose(steps + ([PhotometricDistortion()] if p.get("photometric_distortion") else []))
