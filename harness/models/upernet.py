"""UperNet on a plain ViT, as BEiT does it for ADE20k: four intermediate blocks -> a multi-scale adapter
(stride-2 deconvolutions x2 and x1, identity, 2x2 max-pooling; with 16x16 patches: strides 4, 8, 16, 32) ->
segmentation-models-pytorch's ``UPerNetDecoder`` (PPM + FPN + fusion) -> dropout + a 1x1 classifier, upsampled
bilinearly to the input size.

The adapter reuses ``vitdet.rescale_stage`` (BEiT's fpn1 is deconv-norm-GELU-deconv, fpn2 one deconv); its norm
is LayerNorm instead of BEiT's SyncBatchNorm, so small CPU batches behave. The ViT keeps its cls token and runs
with ``dynamic_img_size`` so the crop size may differ from the pre-training size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import nn

from harness.models.vit import EncoderConfig, build_encoder
from harness.models.vitdet import ViTFeatureMap, rescale_stage


def default_block_indices(depth: int) -> list[int]:
    """BEiT's (3, 5, 7, 11) for 12 blocks: the ends of the four quarters of the network."""
    return [max(0, depth * (i + 1) // 4 - 1) for i in range(4)]


class MultiScaleAdapter(nn.Module):
    """Four ViT block outputs (stride p) -> four maps at strides ``strides`` (each a power-of-two multiple of p)."""

    def __init__(self, vit: ViTFeatureMap, patch_size: int, embed_dim: int, strides: tuple[int, ...]):
        super().__init__()
        self.vit = vit
        self.stages = nn.ModuleList()
        self.out_channels = []
        for stride in strides:
            stage, dim = rescale_stage(embed_dim, patch_size / stride)
            self.stages.append(stage)
            self.out_channels.append(dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [stage(f) for stage, f in zip(self.stages, self.vit(x))]


@dataclass
class SegmenterConfig:
    num_classes: int
    strides: tuple[int, ...] = (4, 8, 16, 32)
    block_indices: tuple[int, ...] | None = None  # default: ends of the four quarters
    decoder_channels: int = 512  # the base UperHead width; BEiT's ViT-B ADE20k configs (and `segmentation`) use 768
    dropout: float = 0.1
    drop_path: float = 0.0
    aux_channels: int = 0  # > 0: BEiT's auxiliary FCN head (training loss only) of this width; 0: none
    aux_level: int = 2  # the pyramid level it reads (mmseg's in_index)


class ViTUperNet(nn.Module):
    def __init__(self, encoder_cfg: EncoderConfig, seg: SegmenterConfig):
        super().__init__()
        encoder = build_encoder(encoder_cfg, drop_path_rate=seg.drop_path, dynamic_img_size=True)
        indices = list(seg.block_indices or default_block_indices(encoder_cfg.depth))
        if len(indices) != len(seg.strides):
            raise ValueError(f"{len(indices)} ViT blocks for {len(seg.strides)} pyramid levels")
        self.adapter = MultiScaleAdapter(ViTFeatureMap(encoder, indices), encoder_cfg.patch_size,
                                         encoder_cfg.embed_dim, seg.strides)
        # the decoder skips the first two entries (strides 1 and 2 in smp's encoders); ours start at the finest level
        self.decoder = UPerNetDecoder(encoder_channels=[3, 0, *self.adapter.out_channels],
                                      encoder_depth=len(seg.strides) + 1, decoder_channels=seg.decoder_channels)
        self.dropout = nn.Dropout2d(seg.dropout)
        self.classifier = nn.Conv2d(seg.decoder_channels, seg.num_classes, kernel_size=1)
        self.aux_level = seg.aux_level
        self.aux_head = fcn_head(self.adapter.out_channels[seg.aux_level], seg.aux_channels, seg.num_classes,
                                 seg.dropout) if seg.aux_channels else None

    @property
    def encoder(self) -> nn.Module:
        return self.adapter.vit.encoder

    def forward(self, images: torch.Tensor, with_aux: bool = False):
        """Logits at the input size; with ``with_aux``, (logits, the auxiliary head's logits) for training."""
        features = self.adapter(images)
        decoded = self.decoder([images, images, *features])
        logits = self._upsampled(self.classifier(self.dropout(decoded)), images)
        if not with_aux:
            return logits
        if self.aux_head is None:
            raise ValueError("this segmenter has no auxiliary head (aux_channels 0)")
        return logits, self._upsampled(self.aux_head(features[self.aux_level]), images)

    @staticmethod
    def _upsampled(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def fcn_head(in_channels: int, channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    """mmseg's ``FCNHead(num_convs=1, concat_input=False)``: 3x3 conv-BN-ReLU, dropout, 1x1 classifier."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))
