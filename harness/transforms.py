"""Image transforms shared by methods and tasks (torchvision v1 API, PIL in, tensor out)."""

from __future__ import annotations

from collections.abc import Callable

from torchvision import transforms as T

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalize() -> T.Normalize:
    return T.Normalize(IMAGENET_MEAN, IMAGENET_STD)


def train_transform(img_size: int, min_scale: float = 0.2, flip: bool = True) -> T.Compose:
    """RandomResizedCrop + flip, as MAE/BEiT pre-training and ViT fine-tuning use."""
    ops = [T.RandomResizedCrop(img_size, scale=(min_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC)]
    if flip:
        ops.append(T.RandomHorizontalFlip())
    return T.Compose(ops + [T.ToTensor(), normalize()])


def classification_train_transform(img_size: int, crop_min_scale: float = 0.08, auto_augment: str | None = None,
                                   color_jitter: float = 0.0, reprob: float = 0.0) -> Callable:
    """The DeiT / BEiT fine-tuning augmentation, built by timm's ``create_transform``: random resized crop from
    ``crop_min_scale`` (bicubic), flip, RandAugment (``auto_augment``, e.g. ``rand-m9-mstd0.5-inc1``) or else colour
    jitter, and random erasing (probability ``reprob``, per-pixel noise). Falsy values switch a part off. As in
    timm (and so in BEiT and DeiT), colour jitter is not applied when RandAugment is."""
    from timm.data import create_transform

    return create_transform(img_size, is_training=True, scale=(crop_min_scale, 1.0), interpolation="bicubic",
                            auto_augment=auto_augment or None, color_jitter=color_jitter or None,
                            re_prob=reprob, re_mode="pixel", re_count=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def build_mixup(params: dict, num_classes: int):
    """timm's batch ``Mixup`` (``mixup``/``cutmix`` alphas, switch probability 0.5, ``label_smoothing`` folded into
    the soft targets, as BEiT and DeiT), or None when both alphas are 0."""
    if not (params["mixup"] > 0 or params["cutmix"] > 0):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=params["mixup"], cutmix_alpha=params["cutmix"], label_smoothing=params["label_smoothing"],
                 num_classes=num_classes)


def eval_transform(img_size: int) -> T.Compose:
    """Resize the short side to img/0.875, centre-crop: the usual evaluation transform."""
    return T.Compose([T.Resize(int(round(img_size / 0.875)), interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(img_size), T.ToTensor(), normalize()])
