"""``beit``: BEiT's masked image modelling (Bao et al. 2021) with the paper's simple tokenizer.

75 of every 196 patches, as BEiT's ``num_mask_patches`` (BEiT's blockwise masking; ``mask_ratio=0.75`` is the
paper's setting for small datasets, ``mask_shape="random"`` for plain random masks) are replaced by a learned
mask token; a linear head
on the encoder's outputs predicts the masked patches' tokens (cross-entropy). Tokens come from
``harness.methods._tokenizer`` (cosine nearest element of a pixel-space vocabulary built by ``prepare`` from
the pre-training images; cached per (manifest hash, tokenizer params, seed), which the job config already
identifies), computed in the training step from the same augmented view the encoder sees.

Differences from BEiT, on purpose: the shared plain timm ViT (no relative position bias, no layer scale),
tokens from the paper's tokenizer instead of DALL-E's dVAE.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from harness.methods._losses import token_cross_entropy
from harness.methods._tokenizer import TOKENIZER_DEFAULTS, PatchTokenizer
from harness.methods.base import PretrainMethod, register_method
from harness.models.masking import WithMask, blockwise_mask, random_mask
from harness.models.tokens import encode_with_mask_tokens
from harness.transforms import train_transform

MASK_SHAPES = ("block", "random")


def draw_mask(grid: tuple[int, int], ratio: float, shape: str, min_block: int | None) -> torch.Tensor:
    if shape == "block":
        return blockwise_mask(grid, ratio, min_block=min_block)
    return random_mask(1, grid[0] * grid[1], ratio)[0]


@register_method("beit")
class BEiT(PretrainMethod):
    description = "BEiT masked image modelling: blockwise-masked patches -> their tokens (paper's k-means tokenizer)"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    pooling = "mean"  # BEiT fine-tunes with use_mean_pooling (run_class_finetuning.py)
    relative_cost = 1.05  # measured FLOPs at ViT-B/16: encoder + vocabulary head + tokenizer (docs/methods.md)
    exact_under_accumulation = True
    recipe = ("BEiT ViT-B/16 (paper: ViT-S/16 and ViT-B/16): 800 epochs on ImageNet-1k, batch 2048, lr 1.5e-3, "
              "warm-up 10 epochs, wd 0.05, clip 3.0, drop path 0.1, colour jitter 0.4, blockwise masking of 75/196 "
              "patches (75% on small sets)")
    defaults = {
        # tiny: blr and warm-up from benchmarks/tiny_calibration.py (docs/calibration.md); paper: BEiT's 1.5e-3 at batch 2048
        "tiny": {"batch_size": 64, "blr": 6e-3, "warmup_fraction": 10 / 800, "clip_grad": 3.0, "drop_path": 0.0,
                 "mask_ratio": 75 / 196, "mask_shape": "block", "min_block_patches": 0, "crop_min_scale": 0.2,
                 "color_jitter": 0.0,
                 **TOKENIZER_DEFAULTS["tiny"]},
        "paper": {"batch_size": 2048, "blr": 1.875e-4, "min_lr": 1e-5, "warmup_epochs": 10, "clip_grad": 3.0,
                  "drop_path": 0.1,
                  "num_workers": 10,
                  "mask_ratio": 75 / 196, "mask_shape": "block", "min_block_patches": 16, "crop_min_scale": 0.08,
                  "color_jitter": 0.4,
                  **TOKENIZER_DEFAULTS["paper"]},
    }

    def __init__(self, encoder_cfg, params, num_classes=None):
        super().__init__(encoder_cfg, params, num_classes)
        if params["mask_shape"] not in MASK_SHAPES:
            raise ValueError(f"mask_shape must be one of {MASK_SHAPES}, got {params['mask_shape']!r}")
        self.tokenizer = PatchTokenizer.from_params(params, encoder_cfg.img_size, encoder_cfg.patch_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder_cfg.embed_dim))
        self.head = nn.Linear(encoder_cfg.embed_dim, params["vocab_size"])
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def prepare(self, data):
        self.tokenizer.prepare(data.dataset, data.cache_key, data.cache_dir)

    def train_transform(self):
        p, g = self.params, self.encoder_cfg.grid_size
        mask_fn = functools.partial(draw_mask, (g, g), p["mask_ratio"], p["mask_shape"], p["min_block_patches"] or None)
        return WithMask(train_transform(self.encoder_cfg.img_size, min_scale=p["crop_min_scale"],
                                         color_jitter=p["color_jitter"]), mask_fn)

    def training_step(self, batch):
        (images, mask), _ = batch
        tokens = self.tokenizer(images)
        encoded = encode_with_mask_tokens(self.encoder, images, mask, self.mask_token)
        logits = self.head(encoded[:, 1:][mask])
        target = tokens[mask]
        loss = token_cross_entropy(logits, target)
        acc = (logits.argmax(-1) == target).float().mean().item()
        # the loss is a mean over masked patches, whose count varies from image to image (gradient accumulation)
        return loss, {"mim_acc": acc, "mask_frac": mask.float().mean().item(), "loss_items": float(mask.sum())}
