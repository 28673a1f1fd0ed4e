"""Detection and segmentation runs on tiny in-memory data (no dataset files): finite losses, metrics in range."""

from __future__ import annotations

import math

import pytest
import torch

from harness.models.vit import EncoderConfig, build_encoder, save_encoder
from harness.models.vitdet import DetectorConfig, build_maskrcnn
from harness.tasks import TASKS, TaskContext
from harness.tasks import detection, segmentation
from harness.tasks._coco_eval import coco_from_targets

# pre-trained at 16 px: the tasks feed 32-48 px, so the positions must be interpolated (dynamic image size)
CFG = EncoderConfig(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _context(tmp_path, task: str, overrides: dict) -> TaskContext:
    torch.manual_seed(0)
    save_encoder(build_encoder(CFG), CFG, tmp_path / "encoder.pt")
    (tmp_path / task).mkdir()
    return TaskContext(job_dir=tmp_path / task, params=TASKS.get(task).resolved_params("tiny", overrides),
                       encoder_cfg=CFG, encoder_path=tmp_path / "encoder.pt", dataset="in-memory", seed=0,
                       device=torch.device("cpu"), scale="tiny")


def _square_scenes(n: int, size: int = 32, seed: int = 1) -> list:
    """Bright squares (class 1: red, class 2: green) of 10-13 px on dark noise, one per image."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        image = torch.rand(3, size, size, generator=g) * 0.2
        x0, y0 = (int(v) for v in torch.randint(0, size - 14, (2,), generator=g))
        side = 10 + i % 4
        label = 1 + i % 2
        image[label - 1, y0:y0 + side, x0:x0 + side] = 1.0
        masks = torch.zeros(1, size, size, dtype=torch.uint8)
        masks[0, y0:y0 + side, x0:x0 + side] = 1
        target = {"boxes": torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32),
                  "labels": torch.tensor([label]), "masks": masks, "image_id": i + 1}
        items.append((image, target))
    return items


def test_vitdet_pyramid_strides_and_channels():
    det = DetectorConfig(num_classes=2, fpn_channels=16, strides=(4, 8, 16, 32))
    model = build_maskrcnn(EncoderConfig(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2), det)
    features = model.backbone(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(f.shape[1] == 16 for f in features.values())
    assert list(features) == ["0", "1", "2", "3", "pool"]


def test_detection_run_gives_finite_losses_and_aps_in_range(tmp_path):
    ctx = _context(tmp_path, "detection", {
        "epochs": 1, "batch_size": 4, "train_sizes": [32], "test_size": 32, "max_size": 32, "warmup_updates": 1,
        "fpn_channels": 16, "box_head_fc": 32, "mask_head_convs": [16], "anchor_sizes": [8, 16, 32, 64, 128],
        "rpn_batch_per_image": 32, "box_batch_per_image": 32, "eval_batch_size": 4})
    train_set, val_set = _square_scenes(8), _square_scenes(4, seed=2)
    gt = coco_from_targets([t for _, t in val_set], [(32, 32)] * 4, num_classes=2)
    rows = detection.train_and_evaluate(ctx, train_set, val_set, gt, coco_ids=(1, 2), num_classes=2)
    values = {r["name"]: r["value"] for r in rows}
    assert set(TASKS.get("detection").metric_names) <= set(values)
    for name in TASKS.get("detection").metric_names:
        assert 0.0 <= values[name] <= 100.0, (name, values[name])
    assert math.isfinite(values["train_loss"])
    history = torch.load(ctx.checkpoint_path, weights_only=False)["history"]
    assert all(math.isfinite(v) for row in history for k, v in row.items() if k.startswith("loss"))


def test_segmentation_run_gives_finite_loss_and_metrics_in_range(tmp_path):
    ctx = _context(tmp_path, "segmentation", {"epochs": 1, "batch_size": 4, "test_size": 32, "warmup_updates": 1,
                                              "decoder_channels": 16})
    g = torch.Generator().manual_seed(2)

    def sample(i: int):
        image = torch.rand(3, 32, 40, generator=g)
        label = torch.zeros(32, 40, dtype=torch.long)
        label[:, 20:] = 1
        label[10:20, 5:15] = 2
        label[0, :] = 255  # ignored row
        image[:, label == 1] += 0.5
        return image.clamp(0, 1), label

    train_set, val_set = [sample(i) for i in range(8)], [sample(i) for i in range(3)]
    rows = segmentation.train_and_evaluate(ctx, train_set, val_set, num_classes=3)
    values = {r["name"]: r["value"] for r in rows}
    for name in ("mIoU", "mAcc", "aAcc"):
        assert 0.0 <= values[name] <= 100.0, (name, values[name])
    assert math.isfinite(values["train_loss"])
    # the encoder inside the segmenter really is the pre-trained one plus training updates, not a fresh one
    ckpt = torch.load(ctx.checkpoint_path, weights_only=False)["model"]
    assert any(k.startswith("model.adapter.vit.encoder.blocks.1.") for k in ckpt)


def test_predict_map_returns_the_label_resolution():
    from harness.models.upernet import SegmenterConfig, ViTUperNet

    net = segmentation.Normalized(ViTUperNet(CFG, SegmenterConfig(num_classes=4, decoder_channels=8))).eval()
    prediction = segmentation.predict_map(net, torch.rand(3, 30, 45), test_size=32, multiple=32)
    assert prediction.shape == (30, 45)
    assert int(prediction.max()) < 4


def test_detector_loads_the_pretrained_encoder_and_decays_its_lr_by_depth(tmp_path):
    from harness.models.vit import load_encoder_weights
    from harness.optim import param_groups

    torch.manual_seed(3)
    pretrained = build_encoder(CFG)
    save_encoder(pretrained, CFG, tmp_path / "encoder.pt")
    model = build_maskrcnn(CFG, DetectorConfig(num_classes=2, fpn_channels=16, box_head_convs=(), box_head_fc=32,
                                               mask_head_convs=(16,)))
    load_encoder_weights(model.backbone.vit.encoder, tmp_path / "encoder.pt")
    assert torch.equal(model.backbone.vit.encoder.blocks[1].mlp.fc2.weight, pretrained.blocks[1].mlp.fc2.weight)
    scale_of = {}
    for group in param_groups(model, 0.05, layer_decay=0.5, num_layers=CFG.depth):
        for p in group["params"]:
            scale_of[id(p)] = group["lr_scale"]
    encoder = model.backbone.vit.encoder
    assert scale_of[id(encoder.patch_embed.proj.weight)] == 0.5**3
    assert scale_of[id(encoder.blocks[1].attn.qkv.weight)] == 0.5**1
    assert scale_of[id(model.roi_heads.box_predictor.cls_score.weight)] == 1.0


@pytest.mark.slow
def test_detection_learns_squares_to_a_clearly_nonzero_ap(tmp_path):
    """~4 CPU-seconds: 80 updates on 32 images of one square each; held-out images, not the training ones."""
    ctx = _context(tmp_path, "detection", {
        "epochs": 10, "batch_size": 4, "lr": 1e-3, "train_sizes": [32], "test_size": 32, "max_size": 32,
        "warmup_updates": 5, "fpn_channels": 16, "box_head_fc": 32, "mask_head_convs": [16],
        "anchor_sizes": [8, 16, 32, 64, 128], "rpn_batch_per_image": 32, "box_batch_per_image": 32})
    train_set, val_set = _square_scenes(32), _square_scenes(8, seed=5)
    gt = coco_from_targets([t for _, t in val_set], [(32, 32)] * 8, num_classes=2)
    values = {r["name"]: r["value"] for r in
              detection.train_and_evaluate(ctx, train_set, val_set, gt, coco_ids=(1, 2), num_classes=2)}
    assert values["bbox_AP50"] > 30.0, values
    assert values["segm_AP50"] > 30.0, values
