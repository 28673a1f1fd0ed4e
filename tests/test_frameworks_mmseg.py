"""Exported encoders inside mmsegmentation itself (``make mmseg``): ``harness export --format mmseg`` + the
UperNet config it writes, loaded by mmengine's ``Config.fromfile`` and mmseg's own checkpoint loading
(``init_cfg=dict(type='Pretrained', ...)``), give the backbone features this project's encoder computes."""

from __future__ import annotations

import os

import pytest
import torch

from harness.cli import main
from harness.models.upernet import default_block_indices
from harness.models.vit import ENCODERS, build_encoder, save_encoder
from harness.models.vitdet import ViTFeatureMap

pytestmark = pytest.mark.frameworks

TOLERANCE = dict(rtol=1e-4, atol=1e-4)
CASES = [("vit-tiny-32", 32), ("vit-tiny-32", 48), ("vit-s16", 224), ("vit-s16", 256)]


@pytest.fixture(scope="module")
def mmseg_registry():
    try:
        from mmseg.utils import register_all_modules
    except ImportError as err:
        if os.environ.get("HARNESS_REQUIRE_FRAMEWORKS") == "1":
            pytest.fail(f"mmsegmentation is not importable (make mmseg): {err}")
        pytest.skip(f"mmsegmentation is not installed (make mmseg): {err}")
    register_all_modules(init_default_scope=True)
    from mmseg.registry import MODELS

    return MODELS


def _random_encoder(name: str, seed: int = 0):
    """Every weight random (norms and biases too), so that any misplaced tensor shows in the features."""
    torch.manual_seed(seed)
    encoder = build_encoder(ENCODERS[name])
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return encoder.eval()


def _export(tmp_path, name: str, crop: int, *extra: str):
    """The encoder, its mmseg checkpoint and the UperNet config (mmengine ``Config``) export wrote for it."""
    from mmengine.config import Config

    encoder = _random_encoder(name)
    save_encoder(encoder, ENCODERS[name], tmp_path / "encoder.pt")
    assert main(["export", str(tmp_path / "encoder.pt"), "--format", "mmseg", "--out", str(tmp_path / "vit.pth"),
                 "--crop-size", str(crop), *extra]) == 0
    return encoder, Config.fromfile(str(tmp_path / "vit_upernet.py"))


def _project_features(encoder, name: str, images: torch.Tensor) -> list[torch.Tensor]:
    """What this project's UperNet takes from the encoder (``harness.models.upernet``)."""
    dynamic = build_encoder(ENCODERS[name], dynamic_img_size=True)
    dynamic.load_state_dict(encoder.state_dict())
    return ViTFeatureMap(dynamic.eval(), default_block_indices(ENCODERS[name].depth))(images)


def _mmseg_backbone(registry, backbone_cfg):
    backbone = registry.build(backbone_cfg)
    backbone.init_weights()  # mmseg's own loading: CheckpointLoader + its pos_embed resize + load_state_dict
    backbone.eval()  # (mmseg's VisionTransformer.train returns None, not the module)
    return backbone


@pytest.mark.parametrize(("name", "crop"), CASES)
def test_mmseg_backbone_gives_the_encoders_upernet_features(mmseg_registry, tmp_path, name, crop):
    encoder, config = _export(tmp_path, name, crop)
    backbone = _mmseg_backbone(mmseg_registry, config.model.backbone)
    images = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs, ours = backbone(images), _project_features(encoder, name, images)
    assert len(theirs) == len(ours) == 4
    for mine, other in zip(ours, theirs):
        torch.testing.assert_close(other, mine, **TOLERANCE)


@pytest.mark.parametrize(("name", "crop"), CASES[::2])
def test_mmseg_final_norm_gives_the_encoders_normed_tokens(mmseg_registry, tmp_path, name, crop):
    encoder, config = _export(tmp_path, name, crop)
    backbone_cfg = config.model.backbone
    backbone_cfg.update(out_indices=-1, final_norm=True)
    backbone = _mmseg_backbone(mmseg_registry, backbone_cfg)
    images = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        (theirs,) = backbone(images)
        tokens = encoder.forward_features(images)[:, 1:]
    grid = crop // ENCODERS[name].patch_size
    torch.testing.assert_close(theirs, tokens.transpose(1, 2).reshape(2, -1, grid, grid), **TOLERANCE)


def test_without_the_export_resampling_mmseg_positions_differ(mmseg_registry, tmp_path):
    """The control: mmseg's own pos_embed resize (plain bicubic) is not the encoder's (antialiased), so the
    export has to resample to the crop; the test above would catch its absence."""
    name, crop = "vit-tiny-32", 48
    encoder, config = _export(tmp_path, name, 32)  # positions left at the pre-training grid
    backbone_cfg = config.model.backbone
    backbone_cfg.update(img_size=(crop, crop))
    backbone = _mmseg_backbone(mmseg_registry, backbone_cfg)
    images = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs, ours = backbone(images), _project_features(encoder, name, images)
    assert (theirs[0] - ours[0]).abs().max() > 1e-3


def test_upernet_config_builds_in_mmseg_with_beits_layer_decay(mmseg_registry, tmp_path):
    from mmengine.optim import build_optim_wrapper

    name, crop = "vit-tiny-32", 32
    encoder, config = _export(tmp_path, name, crop)
    assert config.model.backbone.init_cfg.checkpoint == str((tmp_path / "vit.pth").resolve())
    model = mmseg_registry.build(config.model)
    model.init_weights()
    model.eval()
    images = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model.extract_feat(images)[2], _project_features(encoder, name, images)[2],
                                   **TOLERANCE)  # Feature2Pyramid's x1 level is the block output itself
        logits = model(images, mode="tensor")
    assert logits.shape[:2] == (1, 150)
    wrapper = build_optim_wrapper(model, config.optim_wrapper)
    lr = {param_name: group["lr"] for group in wrapper.optimizer.param_groups
          for param_name, p in model.named_parameters() if any(p is q for q in group["params"])}
    depth, base = ENCODERS[name].depth, config.optim_wrapper.optimizer.lr
    assert lr["backbone.layers.0.attn.attn.in_proj_weight"] == pytest.approx(base * 0.65**depth)
    assert lr["backbone.pos_embed"] == pytest.approx(base * 0.65 ** (depth + 1))
    assert lr["decode_head.conv_seg.weight"] == pytest.approx(base)


def test_mmseg_trains_the_written_config_with_its_own_train_script(mmseg_registry, tmp_path):
    """The documented command (mmseg's tools/train.py on the written config) runs: two iterations and a
    validation on a few synthetic scenes in the ADE20k layout, only data paths and lengths overridden."""
    import subprocess
    import sys
    from pathlib import Path

    import mmseg

    from harness.data.synthetic.segmentation import generate_segmentation

    root = tmp_path / "ade"
    generate_segmentation(root, seed=0, train_images=4, val_images=2, image_size=64)
    _export(tmp_path, "vit-tiny-32", 32)
    overrides = ["train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=2",
                 "default_hooks.logger.interval=1"]
    for loader in ("train_dataloader", "val_dataloader"):
        overrides += [f"{loader}.dataset.data_root={root}", f"{loader}.dataset.img_suffix=.png",
                      f"{loader}.num_workers=0", f"{loader}.persistent_workers=False"]
    train = Path(mmseg.__file__).parent / ".mim" / "tools" / "train.py"
    run = subprocess.run([sys.executable, str(train), str(tmp_path / "vit_upernet.py"), "--work-dir",
                          str(tmp_path / "work"), "--cfg-options", *overrides],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "work" / "iter_2.pth").exists()
    assert "mIoU" in run.stdout + run.stderr


def test_mmseg_install_leaves_the_projects_tests_package_alone(mmseg_registry):
    """mmsegmentation's wheel ships a top-level ``tests`` package; make mmseg removes it, or it shadows ours."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("tests.micro")
    assert spec is not None and Path(spec.origin).parent == Path(__file__).parent
