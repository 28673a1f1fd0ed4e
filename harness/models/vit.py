"""The one ViT encoder every method and task shares: a plain timm VisionTransformer.

Encoders are named (``vit-tiny-32`` ... ``vit-b16``); a study may also give the fields inline.
What a pre-training job exports (``encoder.pt``) loads strictly into ``build_encoder(config)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

from harness.models.encoders import ENCODERS, EncoderConfig, encoder_config  # noqa: F401  (torch-free)


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
