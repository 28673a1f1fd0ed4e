"""Image transforms shared by methods and tasks (torchvision v1 API, PIL in, tensor out)."""

from __future__ import annotations

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


def eval_transform(img_size: int) -> T.Compose:
    """Resize the short side to img/0.875, centre-crop: the usual evaluation transform."""
    return T.Compose([T.Resize(int(round(img_size / 0.875)), interpolation=T.InterpolationMode.BICUBIC),
                      T.CenterCrop(img_size), T.ToTensor(), normalize()])
