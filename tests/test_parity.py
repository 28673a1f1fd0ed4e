"""Parity with independent implementations on PyPI, on the same inputs and weights: DINO's loss and centre
(lightly), InfoNCE (lightly's NTXentLoss), MAE's normalised-pixel loss (transformers' ViTMAE), layer-decay groups
(timm), the fine-tuning and DeiT augmentations (timm's create_transform), BEiT's blockwise mask counts (BEiT's
algorithm, written from its description)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.methods._losses import dino_loss, info_nce, normalized_pixel_mse
from harness.models.masking import blockwise_mask
from harness.models.tokens import gather_tokens, patchify
from harness.models.vit import EncoderConfig, build_encoder
from harness.optim import param_groups

lightly_loss = pytest.importorskip("lightly.loss")


def test_dino_loss_and_centre_match_lightly():
    torch.manual_seed(0)
    out_dim, batch = 32, 6
    student = [torch.randn(batch, out_dim) for _ in range(4)]  # 2 global + 2 local views
    teacher = [torch.randn(batch, out_dim) for _ in range(2)]
    center = torch.randn(1, out_dim) * 0.1
    reference = lightly_loss.DINOLoss(output_dim=out_dim, student_temp=0.1, center_momentum=0.9)
    reference.center.copy_(center)
    expected = reference(teacher, student, teacher_temp=0.05)
    torch.testing.assert_close(dino_loss(student, teacher, center, 0.1, 0.05), expected)

    from harness.methods import METHODS
    from harness.models.vit import encoder_config

    params = METHODS.get("dino").resolved_params("tiny", {"out_dim": out_dim})
    dino = METHODS.get("dino")(encoder_config("vit-tiny-16"), params)
    dino.center.copy_(center)
    dino._add_to_center(torch.cat(teacher))
    dino._update_center()
    torch.testing.assert_close(dino.center, reference.center.reshape(1, -1))


def test_info_nce_matches_lightly_ntxent_with_the_other_images_as_negatives():
    """lightly's NT-Xent also counts views of the same side as negatives (SimCLR); SplitMask's InfoNCE (CPC) only
    the other branch's embeddings of the other images. lightly's memory-bank mode takes exactly those negatives."""
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)

    def one_direction(q, k):
        total = 0.0
        for i in range(len(q)):
            reference = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(len(q) - 1, q.shape[1]))
            reference.memory_bank.bank = F.normalize(torch.cat([k[:i], k[i + 1:]]), dim=-1)
            total = total + reference(q[i:i + 1], k[i:i + 1])
        return total / len(q)

    torch.testing.assert_close(info_nce(a, b, 0.2), 0.5 * (one_direction(a, b) + one_direction(b, a)))


def test_mae_loss_matches_transformers_vitmae():
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTMAEConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=24, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=48, decoder_hidden_size=16,
                                       decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                       decoder_intermediate_size=32, mask_ratio=0.75, norm_pix_loss=True)
    torch.manual_seed(0)
    model = transformers.ViTMAEForPreTraining(config).eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out = model(pixel_values=images, noise=torch.rand(3, 16))
    masked = out.mask.bool().nonzero()[:, 1].reshape(3, -1)  # the masked patches of every image, in grid order
    pred = gather_tokens(out.logits, masked)
    target = gather_tokens(patchify(images, 4), masked)
    torch.testing.assert_close(normalized_pixel_mse(pred, target), out.loss)


def test_layer_decay_groups_match_timm():
    from timm.optim import param_groups_layer_decay

    cfg = EncoderConfig(img_size=16, patch_size=4, embed_dim=24, depth=3, num_heads=2)
    vit = build_encoder(cfg, num_classes=5)
    reference = param_groups_layer_decay(vit, 0.05, vit.no_weight_decay(), layer_decay=0.65)

    def per_param(groups):
        return {id(p): (round(g["lr_scale"], 12), g["weight_decay"]) for g in groups for p in g["params"]}

    class Wrapped(torch.nn.Module):  # a ViT inside another model (detection, segmentation) uses our own grouping
        def __init__(self):
            super().__init__()
            self.encoder = vit

    # timm puts the final norm with the last block; BEiT (get_num_layer_for_vit) and MAE (get_layer_id_for_vit)
    # put everything after the blocks at num_layers + 1, scale 1
    final_norm = {id(p) for p in vit.norm.parameters()}
    expected = {k: ((1.0, v[1]) if k in final_norm else v) for k, v in per_param(reference).items()}
    assert per_param(param_groups(vit, 0.05, 0.65, cfg.depth)) == expected
    assert per_param(param_groups(Wrapped(), 0.05, 0.65, cfg.depth)) == expected


def _same_outputs(ours, reference, seed: int = 0, n: int = 4) -> None:
    image = Image.fromarray(torch.randint(0, 255, (40, 48, 3), dtype=torch.uint8).numpy())
    for i in range(n):
        outputs = []
        for transform in (ours, reference):  # RandAugment draws from numpy and random, erasing from torch
            random.seed(seed + i)
            np.random.seed(seed + i)
            torch.manual_seed(seed + i)
            outputs.append(transform(image))
        a, b = outputs
        torch.testing.assert_close(a, b)


def test_finetune_and_deit_augmentations_are_what_timm_builds_for_the_references_arguments():
    from timm.data import create_transform

    from harness.methods import METHODS
    from harness.tasks import TASKS
    from harness.transforms import classification_train_transform

    ft = TASKS.get("finetune").resolved_params("paper")
    ours = classification_train_transform(32, ft["crop_min_scale"], ft["auto_augment"], ft["color_jitter"],
                                          ft["reprob"])
    # BEiT's datasets.build_transform (training): timm's create_transform with these arguments
    beit = create_transform(32, is_training=True, color_jitter=0.4, auto_augment="rand-m9-mstd0.5-inc1",
                            interpolation="bicubic", re_prob=0.25, re_mode="pixel", re_count=1)
    assert repr(ours) == repr(beit)
    _same_outputs(ours, beit)
    sup = METHODS.get("supervised").resolved_params("paper")
    ours = classification_train_transform(32, sup["crop_min_scale"], sup["auto_augment"], sup["color_jitter"],
                                          sup["reprob"])
    # DeiT's datasets.build_transform (training)
    deit = create_transform(32, is_training=True, color_jitter=0.3, auto_augment="rand-m9-mstd0.5-inc1",
                            interpolation="bicubic", re_prob=0.25, re_mode="pixel", re_count=1)
    assert repr(ours) == repr(deit)
    _same_outputs(ours, deit, seed=10)


def test_randaugment_posterize_at_full_magnitude_gives_a_black_image_as_the_references_pillow():
    from timm.data.auto_augment import NAME_TO_OP

    from harness.transforms import classification_train_transform

    classification_train_transform(32, 0.08, "rand-m9-mstd0.5-inc1", 0.4, 0.25)
    image = Image.new("RGB", (8, 8), (200, 150, 100))
    assert NAME_TO_OP["PosterizeIncreasing"](image, 0).getextrema() == ((0, 0),) * 3
    assert NAME_TO_OP["PosterizeIncreasing"](image, 4).getpixel((0, 0)) == (192, 144, 96)


def _reference_block_mask_count(rng: random.Random, height=14, width=14, target=75, min_patches=16,
                                min_aspect=0.3) -> int:
    """BEiT's masking generator as its paper and code describe it: add rectangles of area U(min, remaining) and
    log-uniform aspect until ``target`` patches are masked; a rectangle that would overshoot is retried (10
    times), a round that adds nothing stops."""
    mask = [[False] * width for _ in range(height)]
    count = 0
    log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    while count < target:
        budget = target - count
        added = 0
        for _ in range(10):
            area = rng.uniform(min_patches, budget)
            aspect = math.exp(rng.uniform(*log_ratio))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < width and h < height:
                top, left = rng.randint(0, height - h), rng.randint(0, width - w)
                new = sum(not mask[i][j] for i in range(top, top + h) for j in range(left, left + w))
                if 0 < new <= budget:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            mask[i][j] = True
                    added = new
                    break
        if added == 0:
            break
        count += added
    return count


def test_beit_mask_count_distribution_matches_the_reference_algorithm():
    from harness.methods import METHODS

    ratio = METHODS.get("beit").resolved_params("paper")["mask_ratio"]
    draws = 600
    ours = [int(blockwise_mask((14, 14), ratio, min_block=16, rng=random.Random(i)).sum()) for i in range(draws)]
    reference = [_reference_block_mask_count(random.Random(10_000 + i)) for i in range(draws)]
    assert max(ours) == max(reference) == 75  # BEiT's num_mask_patches for a 14x14 grid
    mean_ours, mean_ref = sum(ours) / draws, sum(reference) / draws
    spread = (sum((x - mean_ref) ** 2 for x in reference) / draws) ** 0.5
    assert abs(mean_ours - mean_ref) < 4 * spread / math.sqrt(draws) + 0.05, (mean_ours, mean_ref)
