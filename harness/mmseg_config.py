"""An mmsegmentation (1.x) config for UperNet on an exported encoder, with BEiT's ADE20k fine-tuning settings.

The backbone is mmseg's ``VisionTransformer`` set up to compute what this project's encoder computes
(``patch_bias=True`` and LayerNorm eps 1e-6, both unlike mmseg's defaults; the outputs of blocks (3, 5, 7, 11)
of 12 without the final norm, as ``harness.models.upernet``), loading the checkpoint that ``harness export
--format mmseg`` wrote. Then BEiT's head: ``Feature2Pyramid`` (x4, x2, x1, x0.5), ``UPerHead`` and an auxiliary
``FCNHead``; AdamW, layer decay, warm-up and poly decay, 160k iterations of 8 GPUs x 2 crops of 512.
mmseg's layer-decay constructor only knows BEiT, MAE and ConvNeXt backbones, so the decay is written out as one
``custom_keys`` entry per backbone weight (mmengine matches the longest key contained in a parameter's name).
The file stands alone (no ``_base_``), so ``Config.fromfile`` needs no installed config package.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass
from pathlib import Path

from harness.models.upernet import default_block_indices
from harness.models.vit import EncoderConfig


@dataclass(frozen=True)
class BeitAde20k:
    """BEiT's ADE20k recipe for ViT-B (the paper's segmentation setting)."""

    num_classes: int = 150
    lr: float = 7e-4
    layer_decay: float = 0.65
    weight_decay: float = 0.05
    drop_path: float = 0.1
    warmup_iters: int = 1500
    max_iters: int = 160_000
    batch_per_gpu: int = 2  # x 8 GPUs = 16
    decoder_channels: int = 768  # the ViT-B configs set the UperHead to the ViT width (the base file: 512)
    data_root: str = "data/ade/ADEChallengeData2016"


def backbone_config(cfg: EncoderConfig, crop_size: int, recipe: BeitAde20k = BeitAde20k(),
                    init_cfg: dict | None = None) -> dict:
    """mmseg ``VisionTransformer`` arguments equal to the encoder (outputs: the UperNet blocks, no final norm)."""
    if not float(cfg.mlp_ratio).is_integer():  # mmseg sizes the MLP as mlp_ratio * embed_dims, an int
        raise ValueError(f"mmseg's VisionTransformer needs an integer mlp_ratio, not {cfg.mlp_ratio}")
    backbone = dict(
        type="VisionTransformer", img_size=(crop_size, crop_size), patch_size=cfg.patch_size, in_channels=3,
        embed_dims=cfg.embed_dim, num_layers=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=int(cfg.mlp_ratio),
        out_indices=tuple(default_block_indices(cfg.depth)), qkv_bias=True, patch_bias=True,
        drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=recipe.drop_path, with_cls_token=True,
        final_norm=False, norm_cfg=dict(type="LN", eps=1e-6), act_cfg=dict(type="GELU"),
        interpolate_mode="bicubic")
    if init_cfg is not None:
        backbone["init_cfg"] = init_cfg
    return backbone


def layer_decay_keys(cfg: EncoderConfig, decay: float) -> dict[str, dict]:
    """BEiT's layer decay: block i gets ``decay ** (depth - i)``, the embeddings ``decay ** (depth + 1)``, the
    heads 1; no weight decay on biases, norms, the class token and the position embedding."""
    from harness.export import target_layout

    keys = {}
    for name in target_layout("mmseg", cfg):
        if name.startswith("ln1."):  # the final norm: not built with final_norm=False
            continue
        layer = int(name.split(".")[1]) + 1 if name.startswith("layers.") else 0
        no_decay = name.endswith("bias") or ".ln" in name or name in ("cls_token", "pos_embed")
        keys[f"backbone.{name}"] = dict(lr_mult=decay ** (cfg.depth + 1 - layer), decay_mult=0.0 if no_decay else 1.0)
    return keys


def _ade20k_data(crop_size: int, recipe: BeitAde20k) -> dict:
    crop = (crop_size, crop_size)
    scale = (4 * crop_size, crop_size)  # mmseg's ADE20k (2048, 512) for 512 crops
    train_pipeline = [
        dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True),
        dict(type="RandomResize", scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type="RandomCrop", crop_size=crop, cat_max_ratio=0.75), dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"), dict(type="PackSegInputs")]
    test_pipeline = [
        dict(type="LoadImageFromFile"), dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="LoadAnnotations", reduce_zero_label=True), dict(type="PackSegInputs")]

    def dataset(split: str, pipeline: list) -> dict:
        return dict(type="ADE20KDataset", data_root=recipe.data_root, pipeline=pipeline,
                    data_prefix=dict(img_path=f"images/{split}", seg_map_path=f"annotations/{split}"))

    val_loader = dict(batch_size=1, num_workers=4, persistent_workers=True,
                      sampler=dict(type="DefaultSampler", shuffle=False), dataset=dataset("validation", test_pipeline))
    return dict(
        train_dataloader=dict(batch_size=recipe.batch_per_gpu, num_workers=4, persistent_workers=True,
                              sampler=dict(type="InfiniteSampler", shuffle=True),
                              dataset=dataset("training", train_pipeline)),
        val_dataloader=val_loader, test_dataloader=val_loader,
        val_evaluator=dict(type="IoUMetric", iou_metrics=["mIoU"]),
        test_evaluator=dict(type="IoUMetric", iou_metrics=["mIoU"]))


def upernet_config(cfg: EncoderConfig, checkpoint: str, crop_size: int, prefix: str = "",
                   recipe: BeitAde20k = BeitAde20k()) -> dict:
    """The whole config as a dict of top-level variables."""
    if prefix not in ("", "backbone."):
        raise ValueError(f"no config for the key prefix {prefix!r}: '' (init_cfg) or 'backbone.' (load_from)")
    init_cfg = dict(type="Pretrained", checkpoint=checkpoint) if prefix == "" else None
    norm_cfg = dict(type="SyncBN", requires_grad=True)
    crop = (crop_size, crop_size)
    dim, classes = cfg.embed_dim, recipe.num_classes
    model = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=crop),
        backbone=backbone_config(cfg, crop_size, recipe, init_cfg),
        neck=dict(type="Feature2Pyramid", embed_dim=dim, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
        decode_head=dict(type="UPerHead", in_channels=[dim] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=recipe.decoder_channels, dropout_ratio=0.1, num_classes=classes, norm_cfg=norm_cfg,
                         align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(type="FCNHead", in_channels=dim, in_index=2, channels=256, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=classes, norm_cfg=norm_cfg,
                            align_corners=False,
                            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode="slide", crop_size=crop, stride=(crop_size * 2 // 3, crop_size * 2 // 3)))
    interval = recipe.max_iters // 10
    return dict(
        default_scope="mmseg", crop_size=crop, norm_cfg=norm_cfg, model=model, **_ade20k_data(crop_size, recipe),
        optim_wrapper=dict(type="OptimWrapper",
                           optimizer=dict(type="AdamW", lr=recipe.lr, betas=(0.9, 0.999),
                                          weight_decay=recipe.weight_decay),
                           paramwise_cfg=dict(custom_keys=layer_decay_keys(cfg, recipe.layer_decay))),
        param_scheduler=[
            dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=recipe.warmup_iters),
            dict(type="PolyLR", power=1.0, begin=recipe.warmup_iters, end=recipe.max_iters, eta_min=0.0,
                 by_epoch=False)],
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=recipe.max_iters, val_interval=interval),
        val_cfg=dict(type="ValLoop"), test_cfg=dict(type="TestLoop"),
        default_hooks=dict(timer=dict(type="IterTimerHook"), logger=dict(type="LoggerHook", interval=50),
                           param_scheduler=dict(type="ParamSchedulerHook"),
                           checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=interval),
                           sampler_seed=dict(type="DistSamplerSeedHook"),
                           visualization=dict(type="SegVisualizationHook")),
        env_cfg=dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="nccl")),
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(type="SegLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer"),
        log_processor=dict(by_epoch=False), log_level="INFO",
        load_from=checkpoint if prefix == "backbone." else None, resume=False)


def write_upernet_config(cfg: EncoderConfig, checkpoint: Path, out: Path, crop_size: int | None = None,
                         prefix: str = "", recipe: BeitAde20k = BeitAde20k()) -> Path:
    crop_size = crop_size or cfg.img_size
    variables = upernet_config(cfg, str(Path(checkpoint).resolve()), crop_size, prefix, recipe)
    lines = [f"# UperNet on {checkpoint} (written by harness export), BEiT's ADE20k settings: 160k iterations of",
             "# 8 GPUs x 2 crops; see docs/frameworks.md. Fine-tune: python <mmseg>/.mim/tools/train.py THIS_FILE", ""]
    lines += [f"{name} = {pprint.pformat(value, width=110, sort_dicts=False)}" for name, value in variables.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out
