"""The one ViT encoder every method and task shares: a plain timm VisionTransformer.

Encoders are named (``vit-tiny-32`` ... ``vit-b16``); a study may also give the fields inline.
What a pre-training job exports (``encoder.pt``) loads strictly into ``build_encoder(config)``.

How an encoder is read into one vector per image (its *pooling*) belongs to the method that trained it and is
stored in ``encoder.pt`` next to the weights: ``cls`` (the class token after the final norm, as DINO and DeiT)
or ``mean`` (the mean of the patch tokens, as BEiT's ``use_mean_pooling`` and MAE's ``global_pool``; fine-tuning
then normalises the mean with a new ``fc_norm`` and drops the pre-trained final norm, as both references do).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer


@dataclass(frozen=True)
class EncoderConfig:
    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    def to_dict(self) -> dict:
        return asdict(self)


ENCODERS: dict[str, EncoderConfig] = {
    # CPU sizes for the tiny scale
    "vit-tiny-32": EncoderConfig(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3),
    "vit-tiny-16": EncoderConfig(img_size=16, patch_size=4, embed_dim=96, depth=4, num_heads=3),
    "vit-tiny-64": EncoderConfig(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3),
    "vit-small-64": EncoderConfig(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3),
    # the paper's sizes
    "vit-s16": EncoderConfig(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit-b16": EncoderConfig(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12),
}


def encoder_config(name_or_fields: str | dict) -> EncoderConfig:
    if isinstance(name_or_fields, dict):
        return EncoderConfig(**name_or_fields)
    if name_or_fields not in ENCODERS:
        from harness.registry import UnknownNameError

        raise UnknownNameError("model", name_or_fields, list(ENCODERS))
    return ENCODERS[name_or_fields]


POOLINGS = ("cls", "mean")
_TIMM_POOL = {"cls": "token", "mean": "avg"}


def timm_global_pool(pool: str) -> str:
    """timm's ``global_pool`` for a pooling: ``cls`` -> ``token``, ``mean`` -> ``avg`` (with ``fc_norm``)."""
    if pool not in _TIMM_POOL:
        raise ValueError(f"unknown pooling {pool!r} (known: {', '.join(POOLINGS)})")
    return _TIMM_POOL[pool]


def build_encoder(
    config: EncoderConfig, num_classes: int = 0, drop_path_rate: float = 0.0, global_pool: str = "token",
    dynamic_img_size: bool = False,
) -> VisionTransformer:
    """A plain timm ViT (cls token, learned positions). ``num_classes=0`` gives the bare encoder.
    ``global_pool="avg"`` replaces the final norm by an ``fc_norm`` after mean pooling (timm, BEiT, MAE)."""
    return VisionTransformer(
        img_size=config.img_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        global_pool=global_pool,
        dynamic_img_size=dynamic_img_size,
    )


def encoder_state(model: VisionTransformer) -> dict[str, torch.Tensor]:
    """The encoder's weights without any classification head: what a pre-training job exports."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}


def save_encoder(model: VisionTransformer, config: EncoderConfig, path: Path, pool: str = "cls") -> None:
    """``encoder.pt``: ``{"config", "state_dict", "pool"}``; ``state_dict`` loads strictly into timm's ViT."""
    from harness.results import atomic_torch_save

    timm_global_pool(pool)  # validates
    atomic_torch_save({"config": config.to_dict(), "state_dict": encoder_state(model), "pool": pool}, path)


def encoder_pooling(path: Path) -> str:
    """The pooling the method that wrote ``encoder.pt`` declared (``cls`` for files written before it was stored)."""
    return torch.load(path, map_location="cpu", weights_only=True).get("pool", "cls")


def load_encoder_weights(model: VisionTransformer, path: Path) -> None:
    """Load an exported encoder into ``model``; every encoder key must match (heads may differ). A model that
    mean-pools into a new ``fc_norm`` has no final ``norm``: the pre-trained one is dropped, as BEiT and MAE do."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload["state_dict"]
    if isinstance(getattr(model, "norm", None), nn.Identity) and not isinstance(model.fc_norm, nn.Identity):
        state = {k: v for k, v in state.items() if not k.startswith("norm.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head.") and not k.startswith("fc_norm.")]
    if missing or unexpected:
        raise RuntimeError(f"encoder checkpoint {path} does not match the model: missing={missing}, unexpected={unexpected}")
