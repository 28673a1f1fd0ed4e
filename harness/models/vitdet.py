"""Mask R-CNN on a plain ViT, ViTDet style (Li et al. 2022): a simple feature pyramid built from the last ViT
feature map only, fed to torchvision's ``MaskRCNN``.

The pyramid has one level per output stride (default 4, 8, 16, 32, plus a max-pooled level at 64 for the RPN,
as in ViTDet's ``LastLevelMaxPool``). A level whose stride is finer than the patch size is reached with
stride-2 transposed convolutions (LayerNorm + GELU between them, halving the width each time), a coarser one
with 2x2 max-pooling; each level then has a 1x1 and a 3x3 convolution with LayerNorm. With 16x16 patches this
is exactly ViTDet's (4, 2, 1, 0.5) scale factors; with the tiny encoders' smaller patches the same strides are
reached with fewer deconvolutions. The ViT keeps its cls token and learned positions (so an ``encoder.pt``
loads strictly) and runs with ``dynamic_img_size``: the positions are interpolated to whatever padded size the
detector feeds it. Attention is global in every block (no windows, no relative positions).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from harness.models.vit import EncoderConfig, build_encoder
from harness.transforms import IMAGENET_MEAN, IMAGENET_STD


def _conv_ln(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), LayerNorm2d(out_ch)]


def rescale_stage(dim: int, factor: float) -> tuple[nn.Sequential, int]:
    """Resample a stride-p map by ``factor`` (a power of two): deconvolutions up, max-pooling down."""
    steps = round(math.log2(factor))
    if 2.0**steps != factor:
        raise ValueError(f"pyramid scale factor {factor} is not a power of two")
    layers: list[nn.Module] = []
    for i in range(steps):
        if i > 0:
            layers += [LayerNorm2d(dim), nn.GELU()]
        layers.append(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
        dim //= 2
    layers += [nn.MaxPool2d(kernel_size=2, stride=2) for _ in range(-steps)]
    return nn.Sequential(*layers), dim


class ViTFeatureMap(nn.Module):
    """A timm ViT that returns the last block's patch tokens as an NCHW map (no final norm, as ViTDet)."""

    def __init__(self, encoder: nn.Module, block_indices: list[int] | None = None):
        super().__init__()
        self.encoder = encoder  # the name "encoder." lets harness.optim apply layer-wise lr decay
        self.block_indices = block_indices or [len(encoder.blocks) - 1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One map per entry of ``block_indices`` (an index may repeat in shallow test encoders)."""
        unique = sorted(set(self.block_indices))
        maps = self.encoder.forward_intermediates(x, indices=unique, norm=False, output_fmt="NCHW",
                                                  intermediates_only=True)
        return [maps[unique.index(i)] for i in self.block_indices]


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid; returns an OrderedDict '0'..'n-1' (+ 'pool') as torchvision expects."""

    def __init__(self, vit: ViTFeatureMap, patch_size: int, embed_dim: int, strides: tuple[int, ...],
                 out_channels: int, top_pool: bool = True):
        super().__init__()
        self.vit = vit
        self.out_channels = out_channels
        self.strides = tuple(strides)
        self.top_pool = top_pool
        self.stages = nn.ModuleList()
        for stride in strides:
            resample, dim = rescale_stage(embed_dim, patch_size / stride)
            self.stages.append(nn.Sequential(resample, *_conv_ln(dim, out_channels, 1),
                                             *_conv_ln(out_channels, out_channels, 3)))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feature = self.vit(x)[-1]
        out = OrderedDict((str(i), stage(feature)) for i, stage in enumerate(self.stages))
        if self.top_pool:
            out["pool"] = F.max_pool2d(out[str(len(self.stages) - 1)], kernel_size=1, stride=2)
        return out


@dataclass
class DetectorConfig:
    num_classes: int  # foreground classes; torchvision adds the background
    train_sizes: tuple[int, ...] = (1024,)  # short side during training, one drawn per batch
    test_size: int = 1024  # short side at evaluation
    max_size: int = 1024  # cap on the long side
    strides: tuple[int, ...] = (4, 8, 16, 32)
    fpn_channels: int = 256
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per level, the max-pooled level last
    rpn_conv_depth: int = 2
    box_head_convs: tuple[int, ...] = (256, 256, 256, 256)  # ViTDet's "4conv1fc" box head with LayerNorm
    box_head_fc: int = 1024
    mask_head_convs: tuple[int, ...] = (256, 256, 256, 256)
    drop_path: float = 0.0
    detections_per_image: int = 100
    rpn_batch_per_image: int = 256
    box_batch_per_image: int = 512


def build_vitdet_backbone(encoder_cfg: EncoderConfig, det: DetectorConfig) -> SimpleFeaturePyramid:
    encoder = build_encoder(encoder_cfg, drop_path_rate=det.drop_path, dynamic_img_size=True)
    return SimpleFeaturePyramid(ViTFeatureMap(encoder), encoder_cfg.patch_size, encoder_cfg.embed_dim, det.strides,
                                det.fpn_channels)


def build_maskrcnn(encoder_cfg: EncoderConfig, det: DetectorConfig) -> MaskRCNN:
    """torchvision Mask R-CNN with the ViTDet backbone and LayerNorm conv heads. ``model.backbone.vit.encoder``
    is the plain ViT, into which ``load_encoder_weights`` loads a pre-trained ``encoder.pt``."""
    backbone = build_vitdet_backbone(encoder_cfg, det)
    levels = len(det.strides) + 1
    if len(det.anchor_sizes) != levels:
        raise ValueError(f"anchor_sizes needs {levels} entries (one per pyramid level + pool), got {det.anchor_sizes}")
    anchors = AnchorGenerator(tuple((s,) for s in det.anchor_sizes), ((0.5, 1.0, 2.0),) * levels)
    names = [str(i) for i in range(len(det.strides))]
    c = det.fpn_channels
    # torchvision draws the training size from min_size and evaluates at min_size[-1]
    min_size = tuple(s for s in det.train_sizes if s != det.test_size) + (det.test_size,)
    return MaskRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=det.max_size,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
        rpn_anchor_generator=anchors, rpn_head=RPNHead(c, 3, conv_depth=det.rpn_conv_depth),
        rpn_batch_size_per_image=det.rpn_batch_per_image,
        box_roi_pool=MultiScaleRoIAlign(names, output_size=7, sampling_ratio=0),
        box_head=FastRCNNConvFCHead((c, 7, 7), list(det.box_head_convs), [det.box_head_fc], norm_layer=LayerNorm2d),
        box_predictor=FastRCNNPredictor(det.box_head_fc, det.num_classes + 1),
        box_batch_size_per_image=det.box_batch_per_image, box_detections_per_img=det.detections_per_image,
        mask_roi_pool=MultiScaleRoIAlign(names, output_size=14, sampling_ratio=0),
        mask_head=MaskRCNNHeads(c, list(det.mask_head_convs), 1, norm_layer=LayerNorm2d),
        mask_predictor=MaskRCNNPredictor(det.mask_head_convs[-1], det.mask_head_convs[-1], det.num_classes + 1),
    )
