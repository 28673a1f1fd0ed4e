"""``splitmask``: the paper's method (El-Nouby et al. 2021): split, inpaint, match.

Split: each image's patches are split at random into two disjoint sets A and B (``mask_ratio=0.5``: two halves
that cover the image). Each set is encoded *separately* by the shared encoder (A and B of the whole batch go
through the encoder as one batch of 2B independent sequences: the same computation as two passes).
Inpaint: a shallow decoder (``decoder_depth=2`` transformer layers; one decoder whose weights both branches
share) takes a branch's encoded tokens plus a mask token, with its position embedding, at every patch the branch
did not see, and predicts those patches' discrete tokens (the paper's tokenizer, shared with BEiT) by
cross-entropy; at ``mask_ratio=0.5`` A predicts B and B predicts A, so every patch is predicted.
Match: each branch's decoder outputs (all its patch tokens) are mean-pooled into ``x_a`` and ``x_b``, and a
symmetric InfoNCE (CPC: cosine similarities / ``temperature`` 0.2, the other images of the batch as negatives)
matches them. Loss = MIM + ``infonce_weight`` * InfoNCE.

``mask_ratio`` > 0.5 (e.g. the paper's 75% for small datasets): each branch sees a disjoint random
(1 - mask_ratio) of the patches and predicts all the others.

Unknown in the paper, chosen here: InfoNCE weight 1, no projection before InfoNCE, decoder width = encoder
width, decoder pooled over all its patch tokens. The tokenizer vocabulary is a function of (manifest hash,
tokenizer params, seed), all in the job config and so in the job identity.
"""

from __future__ import annotations

import torch

from harness.methods._losses import info_nce, token_cross_entropy
from harness.methods._tokenizer import TOKENIZER_DEFAULTS, PatchTokenizer
from harness.methods.base import PretrainMethod, register_method
from harness.models.heads import MaskedDecoder
from harness.models.masking import complement, random_split
from harness.models.tokens import encode_visible, gather_tokens
from harness.transforms import train_transform


@register_method("splitmask")
class SplitMask(PretrainMethod):
    description = "SplitMask (the paper): two disjoint halves, each inpaints the other's tokens + InfoNCE match"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    pooling = "mean"  # the paper fine-tunes with BEiT's recipe, mean pooling included
    relative_cost = 1.44  # FLOPs at ViT-B/16: two half passes + 2x a 2-layer full-length decoder + heads (docs/methods.md)
    recipe = ("the paper: ViT-S/16 and ViT-B/16, BEiT's recipe (batch 2048, lr 1.5e-3, warm-up 10 epochs, wd 0.05, "
              "clip 3.0, drop path 0.1), 300-800 epochs on ImageNet or a fixed number of updates on fractions")
    defaults = {
        # tiny: blr and warm-up from benchmarks/tiny_calibration.py (docs/calibration.md); paper: BEiT's 1.5e-3 at batch 2048
        "tiny": {"batch_size": 64, "blr": 6e-3, "warmup_fraction": 10 / 800, "clip_grad": 3.0, "drop_path": 0.0,
                 "mask_ratio": 0.5, "decoder_depth": 2, "decoder_dim": 0, "decoder_heads": 0,
                 "infonce_weight": 1.0, "temperature": 0.2, "crop_min_scale": 0.2, "color_jitter": 0.0,
                 **TOKENIZER_DEFAULTS["tiny"]},
        "paper": {"batch_size": 2048, "blr": 1.875e-4, "min_lr": 1e-5, "warmup_epochs": 10, "clip_grad": 3.0,
                  "drop_path": 0.1,
                  "num_workers": 10,
                  "mask_ratio": 0.5, "decoder_depth": 2, "decoder_dim": 0, "decoder_heads": 0,
                  "infonce_weight": 1.0, "temperature": 0.2, "crop_min_scale": 0.08, "color_jitter": 0.4,
                  **TOKENIZER_DEFAULTS["paper"]},
    }

    def __init__(self, encoder_cfg, params, num_classes=None):
        super().__init__(encoder_cfg, params, num_classes)
        if not 0.5 <= params["mask_ratio"] < 1.0:
            raise ValueError(f"splitmask needs mask_ratio in [0.5, 1) (disjoint branches), got {params['mask_ratio']}")
        self.tokenizer = PatchTokenizer.from_params(params, encoder_cfg.img_size, encoder_cfg.patch_size)
        self.decoder = MaskedDecoder(
            enc_dim=encoder_cfg.embed_dim, num_patches=encoder_cfg.num_patches,
            dim=params["decoder_dim"] or encoder_cfg.embed_dim, depth=params["decoder_depth"],
            num_heads=params["decoder_heads"] or encoder_cfg.num_heads, out_dim=params["vocab_size"],
            mlp_ratio=encoder_cfg.mlp_ratio)

    def prepare(self, data):
        self.tokenizer.prepare(data.dataset, data.cache_key, data.cache_dir)

    def train_transform(self):
        return train_transform(self.encoder_cfg.img_size, min_scale=self.params["crop_min_scale"],
                               color_jitter=self.params["color_jitter"])

    def training_step(self, batch):
        images, _ = batch
        vis_a, vis_b = random_split(images.shape[0], self.encoder_cfg.num_patches, 1.0 - self.params["mask_ratio"],
                                    images.device)
        return self.split_loss(images, vis_a, vis_b)

    def split_loss(self, images: torch.Tensor, vis_a: torch.Tensor, vis_b: torch.Tensor):
        """The loss for given visible sets ``vis_a (B, n_a)``, ``vis_b (B, n_b)`` of every image."""
        tokens = self.tokenizer(images)
        if vis_a.shape == vis_b.shape:  # branch A of every image, then branch B, as one batch of 2B sequences
            pooled, logits, target_tokens = self._inpaint(images, tokens, torch.cat([vis_a, vis_b]))
            pooled_a, pooled_b = pooled.chunk(2)
        else:  # an odd number of patches: halves of different sizes, encoded one after the other
            (pooled_a, logits_a, tokens_a), (pooled_b, logits_b, tokens_b) = (
                self._inpaint(images, tokens, v) for v in (vis_a, vis_b))
            logits, target_tokens = torch.cat([logits_a.flatten(0, 1), logits_b.flatten(0, 1)]), torch.cat(
                [tokens_a.flatten(), tokens_b.flatten()])
        mim = token_cross_entropy(logits, target_tokens)
        nce = info_nce(pooled_a, pooled_b, self.params["temperature"])
        loss = mim + self.params["infonce_weight"] * nce
        acc = (logits.argmax(-1) == target_tokens).float().mean().item()
        return loss, {"mim": mim.item(), "infonce": nce.item(), "mim_acc": acc}

    def _inpaint(self, images, tokens, visible):
        """Encode the ``visible (kB, n_vis)`` patches, decode every other one: (decoder outputs mean-pooled over
        all patches, logits at the targets, the targets' tokens)."""
        targets = complement(visible, self.encoder_cfg.num_patches)
        encoded = encode_visible(self.encoder, images, visible)
        features, logits = self.decoder(encoded, visible, targets)
        repeats = visible.shape[0] // images.shape[0]
        target_tokens = gather_tokens(tokens.repeat(repeats, 1).unsqueeze(-1), targets).squeeze(-1)
        return features.mean(dim=1), logits, target_tokens
