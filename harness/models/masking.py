"""Which patches a masked-image-modelling method hides: random masks, BEiT's blockwise masks and SplitMask's
random disjoint split. Masks are boolean ``(B, N)`` tensors over the patch grid in row-major order, True = masked.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch


def num_masked(num_patches: int, ratio: float) -> int:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return int(round(ratio * num_patches))


def random_permutation(batch: int, num_patches: int, device: torch.device | None = None) -> torch.Tensor:
    """One independent random permutation of the patch indices per sample (MAE's argsort of noise)."""
    return torch.rand(batch, num_patches, device=device).argsort(dim=1)


def random_mask_indices(batch: int, num_patches: int, ratio: float, device: torch.device | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking as indices: ``(visible (B, N-M), masked (B, M))`` with M = round(ratio N)."""
    perm = random_permutation(batch, num_patches, device)
    keep = num_patches - num_masked(num_patches, ratio)
    return perm[:, :keep], perm[:, keep:]


def random_mask(batch: int, num_patches: int, ratio: float, device: torch.device | None = None) -> torch.Tensor:
    """Boolean mask with exactly round(ratio N) masked patches per sample."""
    _, masked = random_mask_indices(batch, num_patches, ratio, device)
    return indices_to_mask(masked, num_patches)


def indices_to_mask(indices: torch.Tensor, num_patches: int) -> torch.Tensor:
    mask = torch.zeros(indices.shape[0], num_patches, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def random_split(batch: int, num_patches: int, visible_ratio: float = 0.5, device: torch.device | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """SplitMask's split: two disjoint random index sets ``(A, B)``, each of round(visible_ratio N) patches.

    With ``visible_ratio=0.5`` A and B are complementary halves that cover every patch; with N odd, A has the
    one patch more.
    """
    if not 0.0 < visible_ratio <= 0.5:
        raise ValueError(f"two disjoint visible sets need a visible ratio in (0, 0.5], got {visible_ratio}")
    perm = random_permutation(batch, num_patches, device)
    if visible_ratio == 0.5:
        half = (num_patches + 1) // 2
        return perm[:, :half], perm[:, half:]
    n = int(round(visible_ratio * num_patches))
    return perm[:, :n], perm[:, n:2 * n]


def complement(indices: torch.Tensor, num_patches: int) -> torch.Tensor:
    """The patch indices not in ``indices`` (same count per row), in increasing order."""
    mask = indices_to_mask(indices, num_patches)
    rest = num_patches - indices.shape[1]
    return (~mask).float().argsort(dim=1, descending=True, stable=True)[:, :rest].sort(dim=1).values


def blockwise_mask(grid: tuple[int, int], ratio: float, min_block: int | None = None, max_block: int | None = None,
                   min_aspect: float = 0.3, rng: random.Random | None = None) -> torch.Tensor:
    """BEiT's blockwise masking for one image: add random rectangles (area in [min_block, remaining], log-uniform
    aspect in [min_aspect, 1/min_aspect]) until about ``ratio`` of the patches are masked (never more).

    ``min_block`` defaults to BEiT's 16 patches of a 14x14 grid, scaled to this grid's size (at least 4).
    """
    rng = rng or random
    h, w = grid
    target = num_masked(h * w, ratio)
    min_block = min_block or max(4, int(round(16 * h * w / 196)))
    max_block = max_block or target
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    mask = torch.zeros(h, w, dtype=torch.bool)
    count = 0
    while count < target:
        budget = min(target - count, max_block)
        delta = 0
        for _ in range(10):
            area = rng.uniform(min_block, budget)
            aspect = math.exp(rng.uniform(*log_aspect))
            bh, bw = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if bh < h and bw < w and bh > 0 and bw > 0:
                top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
                block = mask[top:top + bh, left:left + bw]
                new = int((~block).sum())
                if 0 < new <= budget:
                    block.fill_(True)
                    delta = new
                    break
        if delta == 0:
            break
        count += delta
    return mask.flatten()


class WithMask:
    """Wrap an image transform so that it also returns a mask: ``img -> (transform(img), mask_fn())``.

    Used to draw BEiT's blockwise masks in the data-loader workers, as BEiT does.
    """

    def __init__(self, transform: Callable, mask_fn: Callable[[], torch.Tensor]):
        self.transform, self.mask_fn = transform, mask_fn

    def __call__(self, img):
        return self.transform(img), self.mask_fn()
