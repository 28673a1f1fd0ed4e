"""Running the one shared timm VisionTransformer on token sets other than "all patches of a standard image":
a subset of patches (MAE, SplitMask), mask tokens in place of some patches (BEiT) and images of another size
(DINO's local crops, by interpolating the learned position embedding). The encoder itself stays a plain
``build_encoder(config)`` model, so what it exports always loads strictly into one.

Every path goes through ``run_blocks``: cls token (+ its position), ``pos_drop``, ``norm_pre``, blocks, ``norm``.
Outputs are ``(B, 1 + n, D)`` with the cls token first.
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, N, p*p*C)`` in row-major patch order (each patch flattened as (p, p, C))."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tokens (B, N, D)``, ``indices (B, n)`` -> ``(B, n, D)``."""
    return torch.gather(tokens, 1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def position_embeddings(encoder: VisionTransformer, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cls position (1, 1, D), patch positions (1, N, D))`` for a patch grid, interpolated if it differs."""
    pos = encoder.pos_embed
    if tuple(grid) != tuple(encoder.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(encoder.patch_embed.grid_size),
                                     num_prefix_tokens=encoder.num_prefix_tokens)
    return pos[:, :1], pos[:, 1:]


def embed_patches(encoder: VisionTransformer, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch embeddings without positions, ``(B, N, D)``, for images of any size divisible by the patch size."""
    x = encoder.patch_embed.proj(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    return encoder.patch_embed.norm(x), grid


def run_blocks(encoder: VisionTransformer, patch_tokens: torch.Tensor, cls_pos: torch.Tensor) -> torch.Tensor:
    """Prepend the cls token to ``patch_tokens`` (positions already added) and run the transformer."""
    cls = (encoder.cls_token + cls_pos).expand(patch_tokens.shape[0], -1, -1)
    x = torch.cat([cls, patch_tokens], dim=1)
    x = encoder.norm_pre(encoder.pos_drop(x))
    return encoder.norm(encoder.blocks(x))


def encode(encoder: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """All patches of images of any size (positions interpolated when the grid differs from the encoder's)."""
    x, grid = embed_patches(encoder, images)
    cls_pos, pos = position_embeddings(encoder, grid)
    return run_blocks(encoder, x + pos, cls_pos)


def encode_visible(encoder: VisionTransformer, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Only the patches ``visible (kB, n)`` (indices into the grid) enter the transformer: ``(kB, 1 + n, D)``.

    ``k > 1`` encodes k subsets of every image as independent sequences (rows i, B+i, ... belong to image i)
    while embedding the patches only once.
    """
    x, grid = embed_patches(encoder, images)
    cls_pos, pos = position_embeddings(encoder, grid)
    x = x + pos
    if visible.shape[0] != x.shape[0]:
        x = x.repeat(visible.shape[0] // x.shape[0], 1, 1)
    return run_blocks(encoder, gather_tokens(x, visible), cls_pos)


def encode_with_mask_tokens(encoder: VisionTransformer, images: torch.Tensor, mask: torch.Tensor,
                            mask_token: torch.Tensor) -> torch.Tensor:
    """BEiT's input: masked patches (``mask (B, N)``, True = masked) replaced by ``mask_token (1, 1, D)``."""
    x, grid = embed_patches(encoder, images)
    x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype), x)
    cls_pos, pos = position_embeddings(encoder, grid)
    return run_blocks(encoder, x + pos, cls_pos)
