"""The one ViT encoder every method and task shares: a plain timm VisionTransformer.

Encoders are named (``vit-tiny-32`` ... ``vit-b16``); a study may also give the fields inline.
What a pre-training job exports (``encoder.pt``) loads strictly into ``build_encoder(config)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
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


def build_encoder(
    config: EncoderConfig, num_classes: int = 0, drop_path_rate: float = 0.0, global_pool: str = "token",
    dynamic_img_size: bool = False,
) -> VisionTransformer:
    """A plain timm ViT (cls token, learned positions). ``num_classes=0`` gives the bare encoder."""
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


def save_encoder(model: VisionTransformer, config: EncoderConfig, path: Path) -> None:
    from harness.results import atomic_torch_save

    atomic_torch_save({"config": config.to_dict(), "state_dict": encoder_state(model)}, path)


def load_encoder_weights(model: VisionTransformer, path: Path) -> None:
    """Load an exported encoder into ``model``; every encoder key must match (heads may differ)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith("head.") and not k.startswith("fc_norm.")]
    if missing or unexpected:
        raise RuntimeError(f"encoder checkpoint {path} does not match the model: missing={missing}, unexpected={unexpected}")
