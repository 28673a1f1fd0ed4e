"""Dense recipes: the paper-scale defaults of ``detection`` and ``segmentation`` are their references' values
(ViTDet's ``mask_rcnn_vitdet_b_100ep.py``; BEiT's ``upernet_beit_base_12_512_slide_160k_ade20k_pt.py``), and
the tiny scale still resolves."""

from __future__ import annotations

import pytest
import torch

from harness.tasks import TASKS
from harness.tasks import segmentation

VITDET_B = {"lr_decay": "step", "lr_steps": [[163889 / 184375, 0.1], [177546 / 184375, 0.01]],
            "epochs": 100, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.1, "layer_decay": 0.7,
            "drop_path": 0.1, "warmup_updates": 250, "clip_grad": None, "test_size": 1024, "max_size": 1024,
            "train_sizes": [1024], "lsj_scale_range": [0.1, 2.0],
            "strides": [4, 8, 16, 32], "fpn_channels": 256, "rpn_conv_depth": 2, "box_head_convs": [256] * 4,
            "box_head_fc": 1024, "mask_head_convs": [256] * 4, "detections_per_image": 100,
            "rpn_batch_per_image": 256, "box_batch_per_image": 512}

BEIT_ADE20K_B = {"lr_decay": "poly", "updates": 160000, "batch_size": 16, "lr": 7e-4, "min_lr": 0.0,
                 "weight_decay": 0.05,
                 "layer_decay": 0.65, "drop_path": 0.1, "warmup_updates": 1500, "crop_size": 512,
                 "test_size": 512, "ratio_range": [0.5, 2.0], "block_indices": [3, 5, 7, 11],
                 "decoder_channels": 768, "dropout": 0.1, "test_max_size": 2048, "test_stride": 341,
                 "cat_max_ratio": 0.75, "photometric_distortion": True, "aux_channels": 256, "aux_loss_weight": 0.4}


@pytest.mark.parametrize("task, reference", [("detection", VITDET_B), ("segmentation", BEIT_ADE20K_B)])
def test_paper_scale_defaults_are_the_reference_values(task, reference):
    params = TASKS.get(task).resolved_params("paper")
    assert {k: params[k] for k in reference} == reference


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_the_tiny_scale_still_resolves_with_its_own_values(task):
    tiny = TASKS.get(task).resolved_params("tiny")
    paper = TASKS.get(task).resolved_params("paper")
    # tiny: whole-image segmentation evaluation, plain crops without distortion, no large-scale jitter
    paper_only = {"test_max_size", "test_stride", "cat_max_ratio", "photometric_distortion", "aux_channels",
                  "aux_loss_weight", "lsj_scale_range", "lr_decay", "lr_steps"}
    assert set(tiny) == set(paper) - paper_only
    assert tiny["lr"] > 0 and tiny["batch_size"] == 8 and tiny["lr"] != paper["lr"]
    assert tiny["decoder_channels" if task == "segmentation" else "fpn_channels"] == 64


def test_sliding_windows_follow_mmsegs_grid_and_end_flush():
    assert segmentation._window_starts(1000, 512, 341) == [0, 341, 488]
    assert segmentation._window_starts(512, 512, 341) == [0]
    assert segmentation._window_starts(64, 64, 48) == [0]


class _ShapeRecorder(torch.nn.Module):
    """A per-pixel (1x1 conv) segmenter that records the input sizes it is given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Conv2d(3, 5, 1)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.head(x)


def test_sliding_evaluation_sees_only_windows_and_averages_back_to_the_whole_image():
    image = torch.rand(3, 40, 100)
    whole_model, slide_model = _ShapeRecorder(), _ShapeRecorder()
    whole = segmentation.predict_map(whole_model, image, test_size=64, multiple=16)
    slid = segmentation.predict_map(slide_model, image, test_size=64, multiple=16, slide=(64, 48))
    assert whole_model.sizes == [(64, 160)]
    assert slide_model.sizes == [(64, 64)] * 3  # windows at 0, 48 and 96 (flush with the end)
    assert slid.shape == (40, 100) and torch.equal(slid, whole)  # a per-pixel model: overlaps average exactly


def test_the_long_side_is_capped_like_mmsegs_keep_ratio_resize():
    x, nh, nw = segmentation._resized_padded(torch.rand(3, 30, 300), test_size=32, max_size=128, multiple=16)
    assert (nh, nw) == (13, 128) and x.shape[-2:] == (16, 128)


def _two_squares(h: int, w: int):
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 2:10, 4:20] = 1
    masks[1, h - 8:h - 2, w - 6:w - 1] = 1
    boxes = torch.tensor([[4.0, 2.0, 20.0, 10.0], [w - 6.0, h - 8.0, w - 1.0, h - 2.0]])
    return torch.rand(3, h, w), {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks,
                                 "area": torch.tensor([128.0, 30.0]), "iscrowd": torch.zeros(2), "image_id": 7}


def test_large_scale_jitter_gives_square_padded_crops_with_boxes_from_their_masks():
    from harness.tasks.detection import LargeScaleJitter

    torch.manual_seed(0)
    jitter = LargeScaleJitter(64, (0.1, 2.0))
    for _ in range(20):
        image, target = jitter(*_two_squares(48, 80))
        assert image.shape == (3, 64, 64) and target["masks"].shape[-2:] == (64, 64)
        n = len(target["labels"])
        assert target["boxes"].shape == (n, 4) and len(target["area"]) == n and target["image_id"] == 7
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_large_scale_jitter_at_scale_one_keeps_a_fitting_image_and_its_boxes():
    from harness.tasks.detection import LargeScaleJitter

    image, target = _two_squares(40, 80)
    out, jittered = LargeScaleJitter(80, (1.0, 1.0))(image, target)
    assert torch.equal(out[:, :40], image) and not out[:, 40:].any()
    assert torch.equal(jittered["boxes"], target["boxes"]) and jittered["labels"].tolist() == [1, 2]


def _balanced(label: torch.Tensor) -> bool:
    _, counts = torch.unique(label, return_counts=True)
    return len(counts) > 1 and bool(counts.max() < 0.75 * counts.sum())


def test_capped_crops_retry_until_no_class_covers_three_quarters():
    from harness.data.joint_transforms import RandomCrop

    image, label = torch.rand(3, 32, 64), torch.zeros(32, 64, dtype=torch.long)
    label[:, 40:] = 1  # a 32 px crop is balanced only from x = 16 to 31: about half of the positions
    torch.manual_seed(0)
    capped = [_balanced(segmentation.CategoryCappedCrop(32, 0.75)(image, label)[1]) for _ in range(50)]
    plain = [_balanced(RandomCrop(32)(image, label)[1]) for _ in range(50)]
    assert sum(capped) >= 45 and sum(plain) < 35


def test_photometric_distortion_changes_colours_only():
    torch.manual_seed(0)
    image, label = torch.rand(3, 16, 16), torch.randint(0, 3, (16, 16))
    changed = 0
    for _ in range(20):
        out, out_label = segmentation.PhotometricDistortion()(image, label)
        assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1 and out_label is label
        changed += not torch.allclose(out, image)
    assert changed >= 15  # all four steps skipped: 1 in 16


@pytest.mark.parametrize("scale, steps", [("paper", ["RandomShortSideScale", "CategoryCappedCrop",
                                                     "RandomHorizontalFlip", "PhotometricDistortion"]),
                                          ("tiny", ["RandomShortSideScale", "RandomCrop", "RandomHorizontalFlip"])])
def test_each_scale_builds_its_training_augmentation(scale, steps):
    augment = segmentation.train_augmentation(TASKS.get("segmentation").resolved_params(scale))
    assert [type(t).__name__ for t in augment.transforms] == steps
    image, label = augment(torch.rand(3, 40, 60), torch.zeros(40, 60, dtype=torch.long))
    crop = 512 if scale == "paper" else 64
    assert image.shape == (3, crop, crop) and label.shape == (crop, crop)


def test_detection_jitters_at_paper_scale_only():
    from harness.tasks import detection

    paper = detection.train_augmentation(TASKS.get("detection").resolved_params("paper"))
    assert [type(t).__name__ for t in paper.transforms] == ["RandomHorizontalFlip", "LargeScaleJitter"]
    assert paper.transforms[1].size == 1024 and paper.transforms[1].scale_range == (0.1, 2.0)
    tiny = detection.train_augmentation(TASKS.get("detection").resolved_params("tiny"))
    assert type(tiny).__name__ == "RandomHorizontalFlip"


def test_the_auxiliary_head_adds_a_weighted_training_loss(tmp_path):
    import math

    from harness.models.vit import EncoderConfig, build_encoder, save_encoder
    from harness.tasks import TaskContext

    cfg = EncoderConfig(img_size=16, patch_size=4, embed_dim=24, depth=4, num_heads=2)
    torch.manual_seed(0)
    save_encoder(build_encoder(cfg), cfg, tmp_path / "encoder.pt")
    params = {**TASKS.get("segmentation").resolved_params("tiny", {"epochs": 1, "batch_size": 4,
                                                                    "test_size": 32, "decoder_channels": 16}),
              "aux_channels": 8, "aux_loss_weight": 0.4}
    (tmp_path / "job").mkdir()
    ctx = TaskContext(job_dir=tmp_path / "job", params=params, encoder_cfg=cfg, encoder_path=tmp_path / "encoder.pt",
                      dataset="in-memory", seed=0, device=torch.device("cpu"), scale="tiny")
    data = [(torch.rand(3, 32, 32), torch.randint(0, 3, (32, 32))) for _ in range(4)]
    segmentation.train_and_evaluate(ctx, data, data[:2], num_classes=3)
    row = torch.load(ctx.checkpoint_path, weights_only=False)["history"][-1]
    assert math.isfinite(row["loss_aux"])
    assert row["loss"] == pytest.approx(row["loss_main"] + 0.4 * row["loss_aux"], rel=1e-4)
    ckpt = torch.load(ctx.checkpoint_path, weights_only=False)["model"]
    assert "model.aux_head.0.weight" in ckpt


def test_a_segmenter_without_auxiliary_head_refuses_aux_outputs():
    from harness.models.upernet import SegmenterConfig, ViTUperNet
    from harness.models.vit import EncoderConfig

    cfg = EncoderConfig(img_size=16, patch_size=4, embed_dim=24, depth=4, num_heads=2)
    with_aux = ViTUperNet(cfg, SegmenterConfig(num_classes=3, decoder_channels=8, aux_channels=8))
    logits, aux = with_aux(torch.rand(2, 3, 32, 32), with_aux=True)
    assert logits.shape == aux.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="no auxiliary head"):
        ViTUperNet(cfg, SegmenterConfig(num_classes=3, decoder_channels=8))(torch.rand(2, 3, 32, 32), with_aux=True)


def test_lr_decays_follow_mmcvs_poly_and_detectron2s_multistep():
    from harness.optim import cosine_lr, scheduled_lr

    assert scheduled_lr(500, 1000, 100, 1.0, 0.0, "cosine") == cosine_lr(500, 1000, 100, 1.0, 0.0)
    assert scheduled_lr(49, 1000, 100, 1.0, 0.0, "poly") == cosine_lr(49, 1000, 100, 1.0, 0.0)  # warm-up
    assert scheduled_lr(250, 1000, 100, 1.0, 0.0, "poly") == pytest.approx(0.75)  # 1 - 250/1000
    assert scheduled_lr(999, 1000, 100, 1.0, 0.0, "poly") == pytest.approx(0.001)
    steps = ((163889 / 184375, 0.1), (177546 / 184375, 0.01))
    lrs = [scheduled_lr(s, 184375, 250, 1e-4, 0.0, "step", steps) for s in (250, 163888, 163889, 177545, 177546)]
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6])
    with pytest.raises(ValueError, match="unknown lr decay"):
        scheduled_lr(500, 1000, 100, 1.0, 0.0, "linear")


@pytest.mark.parametrize("task, decay", [("detection", "step"), ("segmentation", "poly")])
def test_the_engine_gets_each_references_lr_decay(task, decay):
    from harness.schedule import downstream_schedule, train_config

    params = TASKS.get(task).resolved_params("paper")
    tc = train_config(params, downstream_schedule(params, 118_000), seed=0, num_layers=12)
    assert tc.lr_decay == decay and len(tc.lr_steps) == (2 if decay == "step" else 0)
    tiny = TASKS.get(task).resolved_params("tiny")
    assert train_config(tiny, downstream_schedule(tiny, 100), seed=0).lr_decay == "cosine"
