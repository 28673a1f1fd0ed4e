"""``harness export``: every encoder weight lands on the target layout's key, with the right shape semantics."""

from __future__ import annotations

import torch

from harness.cli import main
from harness.export import convert_state, target_layout
from harness.models.vit import EncoderConfig, build_encoder, encoder_state, save_encoder

CFG = EncoderConfig(img_size=8, patch_size=4, embed_dim=12, depth=2, num_heads=2)


def _block(prefix: str, i: int, parts: list[str]) -> list[str]:
    return [f"{prefix}{i}.{p}" for p in parts]


# written out by hand from mmseg's VisionTransformer (mmseg/models/backbones/vit.py, TransformerEncoderLayer with
# nn.MultiheadAttention and FFN) and tools/model_converters/vit2mmseg.py
# (bare keys, as mmseg's converters write them for backbone.init_cfg)
MMSEG_EXPECTED = ["cls_token", "pos_embed", "patch_embed.projection.weight", "patch_embed.projection.bias"] + [
    k for i in range(2) for k in _block("layers.", i, [
        "ln1.weight", "ln1.bias", "attn.attn.in_proj_weight", "attn.attn.in_proj_bias", "attn.attn.out_proj.weight",
        "attn.attn.out_proj.bias", "ln2.weight", "ln2.bias", "ffn.layers.0.0.weight", "ffn.layers.0.0.bias",
        "ffn.layers.1.weight", "ffn.layers.1.bias"])
] + ["ln1.weight", "ln1.bias"]

# detectron2/modeling/backbone/vit.py (ViT with use_rel_pos=True, as ViTDet) under SimpleFeaturePyramid.net
D2_EXPECTED = ["backbone.net.pos_embed", "backbone.net.patch_embed.proj.weight",
               "backbone.net.patch_embed.proj.bias"] + [
    k for i in range(2) for k in _block("backbone.net.blocks.", i, [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.rel_pos_h", "attn.rel_pos_w",
        "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias"])
]


def test_target_layouts_match_the_hand_written_key_lists():
    assert target_layout("mmseg", CFG) == MMSEG_EXPECTED
    assert target_layout("detectron2", CFG) == [k.removeprefix("backbone.net.") for k in D2_EXPECTED]


def test_mmseg_export_covers_every_encoder_weight():
    state = encoder_state(build_encoder(CFG))
    out, report = convert_state(state, CFG, "mmseg")
    assert sorted(out) == sorted(MMSEG_EXPECTED)
    assert report.missing == [] and report.unexpected == []
    assert set(report.mapped) == set(state)
    assert torch.equal(out["layers.1.attn.attn.in_proj_weight"], state["blocks.1.attn.qkv.weight"])
    assert torch.equal(out["layers.0.ffn.layers.1.weight"], state["blocks.0.mlp.fc2.weight"])
    assert torch.equal(out["ln1.bias"], state["norm.bias"])


def test_detectron2_export_maps_all_but_cls_token_and_final_norm():
    state = encoder_state(build_encoder(CFG))
    out, report = convert_state(state, CFG, "detectron2")
    assert set(out) == set(D2_EXPECTED) - {k for k in D2_EXPECTED if "rel_pos" in k}
    assert sorted(report.unexpected) == ["cls_token", "norm.bias", "norm.weight"]
    assert sorted(report.missing) == sorted(k for k in D2_EXPECTED if "rel_pos" in k)
    assert out["backbone.net.pos_embed"].shape == (1, 1 + 4, 12)  # keeps the cls position (pretrain_use_cls_token)
    assert torch.equal(out["backbone.net.blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])


def test_export_command_writes_loadable_checkpoints(tmp_path, capsys):
    save_encoder(build_encoder(CFG), CFG, tmp_path / "encoder.pt")
    assert main(["export", str(tmp_path / "encoder.pt"), "--format", "mmseg", "--out", str(tmp_path / "m.pth")]) == 0
    assert main(["export", str(tmp_path / "encoder.pt"), "--format", "detectron2", "--out", str(tmp_path / "d.pth"),
                 "--report", str(tmp_path / "r.json")]) == 0
    assert "mapped 30 tensors" in capsys.readouterr().out
    mm = torch.load(tmp_path / "m.pth", weights_only=True)
    assert sorted(mm["state_dict"]) == sorted(MMSEG_EXPECTED)
    d2 = torch.load(tmp_path / "d.pth", weights_only=True)
    assert "backbone.net.blocks.1.mlp.fc2.bias" in d2["model"]
    assert (tmp_path / "r.json").exists()
    prefixed = tmp_path / "prefixed.pth"
    assert main(["export", str(tmp_path / "encoder.pt"), "--format", "mmseg", "--out", str(prefixed),
                 "--prefix", "backbone."]) == 0
    assert "backbone.layers.0.ln1.weight" in torch.load(prefixed, weights_only=True)["state_dict"]


def test_mmseg_export_writes_an_upernet_config_that_points_at_the_checkpoint(tmp_path):
    """The config is plain Python (no mmseg needed to read it); its backbone matches the encoder."""
    import runpy

    save_encoder(build_encoder(CFG), CFG, tmp_path / "encoder.pt")
    out = tmp_path / "vit.pth"
    assert main(["export", str(tmp_path / "encoder.pt"), "--format", "mmseg", "--out", str(out),
                 "--crop-size", "16"]) == 0
    config = runpy.run_path(str(tmp_path / "vit_upernet.py"))
    backbone = config["model"]["backbone"]
    assert backbone["init_cfg"] == {"type": "Pretrained", "checkpoint": str(out.resolve())}
    assert backbone["img_size"] == (16, 16) and backbone["patch_bias"] and backbone["norm_cfg"]["eps"] == 1e-6
    assert config["load_from"] is None
    keys = config["optim_wrapper"]["paramwise_cfg"]["custom_keys"]
    assert keys["backbone.layers.1.attn.attn.in_proj_weight"] == {"lr_mult": 0.65, "decay_mult": 1.0}
    assert keys["backbone.pos_embed"] == {"lr_mult": 0.65**3, "decay_mult": 0.0}
    assert keys["backbone.layers.0.ln2.weight"]["decay_mult"] == 0.0


def test_mmseg_export_resamples_positions_to_the_crop_as_the_encoder_does(tmp_path):
    encoder = build_encoder(CFG).eval()
    save_encoder(encoder, CFG, tmp_path / "encoder.pt")
    assert main(["export", str(tmp_path / "encoder.pt"), "--format", "mmseg", "--out", str(tmp_path / "m.pth"),
                 "--crop-size", "16"]) == 0
    pos_embed = torch.load(tmp_path / "m.pth", weights_only=True)["state_dict"]["pos_embed"]
    assert pos_embed.shape == (1, 1 + 16, 12)
    dynamic = build_encoder(CFG, dynamic_img_size=True)
    dynamic.load_state_dict(encoder.state_dict())
    x = dynamic.patch_embed(torch.zeros(1, 3, 16, 16))
    expected = dynamic._pos_embed(x) - torch.cat([dynamic.cls_token, x.flatten(1, 2)], dim=1)
    torch.testing.assert_close(pos_embed, expected, rtol=0, atol=1e-6)
