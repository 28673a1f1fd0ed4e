"""``mae``: masked autoencoder (He et al. 2021), beyond the paper: the most used MIM method today.

75% of the patches are masked at random per image (exact count); the shared encoder sees only the visible
quarter (``harness.models.tokens.encode_visible``); a lightweight decoder (``MaskedDecoder``, shared with
SplitMask) adds mask tokens at the masked positions and regresses each masked patch's pixels normalised by
the patch's own mean and variance (MAE's ``norm_pix_loss``); the loss is the MSE over masked patches only.
Pixels are those of the ImageNet-normalised input, as in MAE.

Differences from MAE: learned (not fixed sin-cos) position embeddings, in the encoder (the shared timm ViT) and
in the decoder.
"""

from __future__ import annotations

from harness.methods._losses import normalized_pixel_mse
from harness.methods.base import PretrainMethod, register_method
from harness.models.heads import MaskedDecoder
from harness.models.masking import random_mask_indices
from harness.models.tokens import encode_visible, gather_tokens, patchify
from harness.transforms import train_transform


@register_method("mae")
class MAE(PretrainMethod):
    description = "MAE (beyond the paper): 75% random masking, encoder on visible patches, pixel decoder"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    pooling = "mean"  # MAE fine-tunes with global_pool (main_finetune.py, models_vit.py)
    relative_cost = 0.56  # FLOPs at ViT-B/16: a quarter of the tokens + the 8 x 512-d decoder (docs/methods.md)
    exact_under_accumulation = True
    recipe = ("MAE ViT-B/16: 800-1600 epochs on ImageNet-1k, batch 4096, lr 1.5e-4 x batch/256 = 2.4e-3, "
              "betas (0.9, 0.95), wd 0.05, warm-up 40 epochs, decoder 8 x 512-d, 75% masking, norm-pixel loss")
    defaults = {
        # tiny: blr and warm-up from benchmarks/tiny_calibration.py (docs/calibration.md); paper: MAE's blr 1.5e-4 (2.4e-3 at batch 4096)
        "tiny": {"batch_size": 64, "blr": 6.66e-4, "warmup_fraction": 1 / 3, "betas": [0.9, 0.95], "drop_path": 0.0,
                 "mask_ratio": 0.75, "decoder_depth": 1, "decoder_dim": 64, "decoder_heads": 2,
                 "crop_min_scale": 0.2},
        "paper": {"batch_size": 4096, "blr": 1.5e-4, "warmup_epochs": 40, "betas": [0.9, 0.95], "drop_path": 0.0,
                  "num_workers": 10,
                  "mask_ratio": 0.75, "decoder_depth": 8, "decoder_dim": 512, "decoder_heads": 16,
                  "crop_min_scale": 0.2},
    }

    def __init__(self, encoder_cfg, params, num_classes=None):
        super().__init__(encoder_cfg, params, num_classes)
        self.decoder = MaskedDecoder(
            enc_dim=encoder_cfg.embed_dim, num_patches=encoder_cfg.num_patches, dim=params["decoder_dim"],
            depth=params["decoder_depth"], num_heads=params["decoder_heads"],
            out_dim=encoder_cfg.patch_size ** 2 * 3, mlp_ratio=encoder_cfg.mlp_ratio)

    def train_transform(self):
        return train_transform(self.encoder_cfg.img_size, min_scale=self.params["crop_min_scale"])

    def training_step(self, batch):
        images, _ = batch
        visible, masked = random_mask_indices(images.shape[0], self.encoder_cfg.num_patches,
                                              self.params["mask_ratio"], images.device)
        encoded = encode_visible(self.encoder, images, visible)
        _, pred = self.decoder(encoded, visible, masked)
        target = gather_tokens(patchify(images, self.encoder_cfg.patch_size), masked)
        return normalized_pixel_mse(pred, target), {}
