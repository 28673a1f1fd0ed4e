"""Dense recipes: the paper-scale defaults of ``detection`` and ``segmentation`` are their references' values
(ViTDet's ``mask_rcnn_vitdet_b_100ep.py``; BEiT's ``upernet_beit_base_12_512_slide_160k_ade20k_pt.py``), and
the tiny scale still resolves."""

from __future__ import annotations

import pytest

from harness.tasks import TASKS

VITDET_B = {"epochs": 100, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.1, "layer_decay": 0.7,
            "drop_path": 0.1, "warmup_updates": 250, "clip_grad": None, "test_size": 1024, "max_size": 1024,
            "strides": [4, 8, 16, 32], "fpn_channels": 256, "rpn_conv_depth": 2, "box_head_convs": [256] * 4,
            "box_head_fc": 1024, "mask_head_convs": [256] * 4, "detections_per_image": 100,
            "rpn_batch_per_image": 256, "box_batch_per_image": 512}

BEIT_ADE20K_B = {"updates": 160000, "batch_size": 16, "lr": 7e-4, "min_lr": 0.0, "weight_decay": 0.05,
                 "layer_decay": 0.65, "drop_path": 0.1, "warmup_updates": 1500, "crop_size": 512,
                 "test_size": 512, "ratio_range": [0.5, 2.0], "block_indices": [3, 5, 7, 11],
                 "decoder_channels": 768, "dropout": 0.1}


@pytest.mark.parametrize("task, reference", [("detection", VITDET_B), ("segmentation", BEIT_ADE20K_B)])
def test_paper_scale_defaults_are_the_reference_values(task, reference):
    params = TASKS.get(task).resolved_params("paper")
    assert {k: params[k] for k in reference} == reference


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_the_tiny_scale_still_resolves_with_its_own_values(task):
    tiny = TASKS.get(task).resolved_params("tiny")
    paper = TASKS.get(task).resolved_params("paper")
    assert set(tiny) == set(paper)
    assert tiny["lr"] > 0 and tiny["batch_size"] == 8 and tiny["lr"] != paper["lr"]
    assert tiny["decoder_channels" if task == "segmentation" else "fpn_channels"] == 64
