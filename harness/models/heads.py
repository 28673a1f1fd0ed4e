"""Heads that pre-training methods put on top of the shared encoder: the lightweight masked decoder shared by
MAE and SplitMask, and DINO's projection head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from harness.models.tokens import gather_tokens


class MaskedDecoder(nn.Module):
    """A shallow transformer that sees the encoded visible patches plus a learned mask token at every target
    position (each with its own learned position embedding), and predicts ``out_dim`` values per target.

    Input order is ``[cls, visible..., targets...]``; attention is permutation-equivariant, so this equals
    MAE's "unshuffle to the original order" when visible + targets cover the grid.
    """

    def __init__(self, enc_dim: int, num_patches: int, dim: int, depth: int, num_heads: int, out_dim: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_linear)

    def forward(self, encoded: torch.Tensor, visible: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``encoded (B, 1 + n_vis, enc_dim)`` (cls first), ``visible (B, n_vis)``, ``targets (B, n_t)`` ->
        ``(features of all patch tokens (B, n_vis + n_t, dim), predictions at the targets (B, n_t, out_dim))``."""
        x = self.embed(encoded)
        pos = self.pos_embed.expand(x.shape[0], -1, -1)
        patch_pos = pos[:, 1:]
        vis = x[:, 1:] + gather_tokens(patch_pos, visible)
        tgt = self.mask_token.to(x.dtype) + gather_tokens(patch_pos, targets)
        x = torch.cat([x[:, :1] + pos[:, :1], vis, tgt], dim=1)
        x = self.norm(self.blocks(x))
        features = x[:, 1:]
        return features, self.head(features[:, visible.shape[1]:])


class DINOHead(nn.Module):
    """DINO's head: 3-layer MLP (GELU) to a bottleneck, L2 normalisation, then a weight-normalised linear layer
    without bias: direction ``last_layer_direction`` times a norm that is fixed to 1 (``norm_last_layer=True``)
    or learned from 1 (``last_layer_gain``, DINO's ``weight_g``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, layers: int = 3,
                 norm_last_layer: bool = True):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        mlp: list[nn.Module] = []
        for i in range(layers):
            mlp.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mlp.append(nn.GELU())
        self.mlp = nn.Sequential(*mlp)
        self.last_layer_direction = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        self.last_layer_gain = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))
        self.apply(_init_linear)
        nn.init.trunc_normal_(self.last_layer_direction, std=0.02)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.last_layer_direction, self.last_layer_gain) if p is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        weight = F.normalize(self.last_layer_direction, dim=-1)
        if self.last_layer_gain is not None:
            weight = weight * self.last_layer_gain
        return F.linear(x, weight)


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
