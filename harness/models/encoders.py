"""The encoder sizes by name (``vit-tiny-32`` ... ``vit-b16``) and their fields; a study may also give the fields
inline. Plain data, no torch: planning reads it; ``harness.models.vit`` builds the encoders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
