"""``dino``: self-distillation with no labels (Caron et al. 2021), the paper's joint-embedding baseline.

Multi-crop: 2 global crops (``img_size``, scale [0.4, 1]) and ``local_crops`` local crops (about 96/224 of the
image size, rounded to whole patches, scale [0.05, 0.4]) with DINO's colour jitter, grey, blur and
solarisation. The student (shared encoder + DINO head: 3-layer MLP, L2-normalised bottleneck, weight-normalised
last layer of fixed norm) sees every crop, local crops through an interpolated position embedding
(``harness.models.tokens.encode``; the encoder itself stays a plain fixed-size timm ViT). The teacher, an EMA
of the student (momentum from ``momentum_teacher`` to 1 along a cosine), sees the global crops; its outputs are
centred (EMA centre, momentum ``center_momentum``) and sharpened (temperature warmed up linearly from
``warmup_teacher_temp`` to ``teacher_temp`` over the first ``teacher_temp_warmup`` fraction of training). The
teacher is not optimised (``optimized_module`` is the student) and **the exported encoder is the teacher's**,
as DINO evaluates it.

As ``main_dino.py``: weight decay follows a cosine from ``weight_decay`` 0.04 to ``weight_decay_end`` 0.4; the
last layer of the head gets no update during the first ``freeze_last_layer`` epochs; ``norm_last_layer``
(None: per architecture, as DINO's help text recommends: fixed norm for ViT-B, learned for ViT-S) decides
whether the last layer's norm is fixed to 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torchvision import transforms as T

from harness.methods._losses import dino_loss
from harness.methods.base import PretrainMethod, register_method
from harness.models.ema import cosine_momentum, ema_update, frozen_copy
from harness.models.heads import DINOHead
from harness.models.tokens import encode
from harness.models.vit import build_encoder
from harness.transforms import normalize


def local_crop_size(img_size: int, patch_size: int) -> int:
    """DINO's 96 px local crops for 224 px images, scaled and rounded to whole patches (at least 2x2)."""
    return max(2, round(img_size * 96 / 224 / patch_size)) * patch_size


def _blur(size: int, p: float) -> T.RandomApply:
    kernel = max(3, (size // 10) | 1)
    return T.RandomApply([T.GaussianBlur(kernel_size=kernel, sigma=(0.1, 2.0))], p=p)


class MultiCrop:
    """PIL image -> [global_1, global_2, local_1, ..., local_n] tensors (DINO's DataAugmentationDINO)."""

    def __init__(self, img_size: int, local_size: int, local_crops: int, global_scale=(0.4, 1.0),
                 local_scale=(0.05, 0.4), color_jitter: float = 0.4, grayscale_p: float = 0.2):
        flip_jitter: list = [T.RandomHorizontalFlip()]
        if color_jitter:  # DINO's ColorJitter(0.4, 0.4, 0.2, 0.1): saturation and hue in proportion
            jitter = T.ColorJitter(color_jitter, color_jitter, color_jitter / 2, color_jitter / 4)
            flip_jitter.append(T.RandomApply([jitter], p=0.8))
        if grayscale_p:
            flip_jitter.append(T.RandomGrayscale(p=grayscale_p))
        bicubic = T.InterpolationMode.BICUBIC
        to_tensor = [T.ToTensor(), normalize()]
        self.global_1 = T.Compose([T.RandomResizedCrop(img_size, global_scale, interpolation=bicubic), *flip_jitter,
                                   _blur(img_size, 1.0), *to_tensor])
        self.global_2 = T.Compose([T.RandomResizedCrop(img_size, global_scale, interpolation=bicubic), *flip_jitter,
                                   _blur(img_size, 0.1), T.RandomSolarize(128, p=0.2), *to_tensor])
        self.local = T.Compose([T.RandomResizedCrop(local_size, local_scale, interpolation=bicubic), *flip_jitter,
                                _blur(local_size, 0.5), *to_tensor])
        self.local_crops = local_crops

    def __call__(self, img) -> list[torch.Tensor]:
        return [self.global_1(img), self.global_2(img)] + [self.local(img) for _ in range(self.local_crops)]


def norm_last_layer(params: dict, encoder_cfg) -> bool:
    """DINO's ``norm_last_layer``: the study's value, or per architecture (True from ViT-B's width up)."""
    if params["norm_last_layer"] is not None:
        return bool(params["norm_last_layer"])
    return encoder_cfg.embed_dim >= 768


@register_method("dino")
class DINO(PretrainMethod):
    description = "DINO: multi-crop self-distillation, EMA teacher, centring + sharpening (exports the teacher)"
    version = 2  # 2: warm-up as a share of the run at the tiny scale
    pooling = "cls"  # DINO evaluates the class token (eval_knn.py, eval_linear.py)
    relative_cost = 4.6  # FLOPs at ViT-S/16: student on 2x224 + 10x96 crops, teacher fwd on 2x224 (docs/methods.md)
    exact_under_accumulation = True
    recipe = ("DINO ViT-S/16: 300-800 epochs on ImageNet-1k, batch 1024, lr 5e-4 x batch/256 = 2e-3, wd 0.04 "
              "-> 0.4 (cosine), last layer frozen for 1 epoch, warm-up 10 epochs, clip 3.0, drop path 0.1, "
              "out_dim 65536, 2x224 + 10x96 crops, "
              "teacher temp 0.04 -> 0.07 over 30 epochs, teacher momentum 0.996 -> 1")
    # lr = blr x batch / 256 (main_dino.py); tiny: blr and warm-up from
    # benchmarks/tiny_calibration.py (docs/calibration.md)
    defaults = {
        "tiny": {"batch_size": 64, "blr": 2.22e-4, "min_lr": 1e-6, "weight_decay": 0.04, "weight_decay_end": 0.4,
                 "warmup_fraction": 1 / 3, "freeze_last_layer": 1, "norm_last_layer": True,
                 "clip_grad": 3.0, "drop_path": 0.0, "out_dim": 256, "head_hidden_dim": 256, "head_bottleneck_dim": 64,
                 "local_crops": 4, "local_crop_size": 0, "global_min_scale": 0.4, "local_max_scale": 0.4,
                 "local_min_scale": 0.05, "color_jitter": 0.4, "grayscale_p": 0.2, "student_temp": 0.1,
                 "warmup_teacher_temp": 0.04, "teacher_temp": 0.04,
                 "teacher_temp_warmup": 0.1, "momentum_teacher": 0.996, "center_momentum": 0.9},
        "paper": {"batch_size": 1024, "blr": 5e-4, "min_lr": 1e-6, "weight_decay": 0.04, "weight_decay_end": 0.4,
                  "warmup_epochs": 10, "freeze_last_layer": 1, "norm_last_layer": None,
                  "num_workers": 10,
                  "clip_grad": 3.0, "drop_path": 0.1, "out_dim": 65536, "head_hidden_dim": 2048,
                  "head_bottleneck_dim": 256, "local_crops": 10, "local_crop_size": 0, "global_min_scale": 0.4,
                  "local_max_scale": 0.4, "local_min_scale": 0.05, "color_jitter": 0.4, "grayscale_p": 0.2,
                  "student_temp": 0.1, "warmup_teacher_temp": 0.04,
                  "teacher_temp": 0.07, "teacher_temp_warmup": 0.1, "momentum_teacher": 0.996,
                  "center_momentum": 0.9},
    }

    def __init__(self, encoder_cfg, params, num_classes=None):
        super().__init__(encoder_cfg, params, num_classes)
        self.head = DINOHead(encoder_cfg.embed_dim, params["out_dim"], params["head_hidden_dim"],
                             params["head_bottleneck_dim"], norm_last_layer=norm_last_layer(params, encoder_cfg))
        teacher_encoder = build_encoder(encoder_cfg)  # no drop path in the teacher
        teacher_encoder.load_state_dict(self.encoder.state_dict())
        self.teacher = nn.ModuleDict({"encoder": frozen_copy(teacher_encoder), "head": frozen_copy(self.head)})
        self.register_buffer("center", torch.zeros(1, params["out_dim"]))
        self.register_buffer("progress", torch.zeros(2, dtype=torch.long))  # (updates done, total updates)

    def train_transform(self):
        p, cfg = self.params, self.encoder_cfg
        local = p["local_crop_size"] or local_crop_size(cfg.img_size, cfg.patch_size)
        return MultiCrop(cfg.img_size, local, p["local_crops"], (p["global_min_scale"], 1.0),
                         (p["local_min_scale"], p["local_max_scale"]), p["color_jitter"], p["grayscale_p"])

    def optimized_module(self) -> nn.Module:
        return nn.ModuleDict({"encoder": self.encoder, "head": self.head})

    def exported_encoder(self):
        return self.teacher["encoder"]

    def teacher_temp(self) -> float:
        p = self.params
        step, total = (int(v) for v in self.progress)
        warmup = p["teacher_temp_warmup"] * total
        if total == 0 or step >= warmup:
            return p["teacher_temp"] if total else p["warmup_teacher_temp"]
        return p["warmup_teacher_temp"] + (p["teacher_temp"] - p["warmup_teacher_temp"]) * step / warmup

    def training_step(self, batch):
        crops, _ = batch
        n_local = len(crops) - 2
        globals_ = torch.cat(crops[:2])
        student = list(self.head(encode(self.encoder, globals_)[:, 0]).chunk(2))
        if n_local:
            student += list(self.head(encode(self.encoder, torch.cat(crops[2:]))[:, 0]).chunk(n_local))
        with torch.no_grad():
            teacher_out = self.teacher["head"](encode(self.teacher["encoder"], globals_)[:, 0]).float()
        loss = dino_loss(student, list(teacher_out.chunk(2)), self.center, self.params["student_temp"],
                         self.teacher_temp())
        if self.training:
            self._add_to_center(teacher_out)
        return loss, {"teacher_temp": self.teacher_temp()}

    @torch.no_grad()
    def _add_to_center(self, teacher_out: torch.Tensor) -> None:
        """Sum the teacher outputs of this (micro-)batch; the centre moves once per update, in ``after_step``,
        so every micro-batch of an accumulated update is centred like the whole batch."""
        pending = getattr(self, "_pending_center", None)
        batch_sum = teacher_out.sum(dim=0, keepdim=True)
        count = float(len(teacher_out))
        self._pending_center = (batch_sum, count) if pending is None else (pending[0] + batch_sum, pending[1] + count)

    @torch.no_grad()
    def _update_center(self) -> None:
        if getattr(self, "_pending_center", None) is None:
            return
        batch_center, n = self._pending_center
        self._pending_center = None
        count = torch.tensor(n, device=batch_center.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            dist.all_reduce(count)
        m = self.params["center_momentum"]
        self.center.mul_(m).add_(batch_center / count, alpha=1 - m)

    def before_optimizer_step(self, step, total_steps):
        if step < self.params["freeze_last_layer"] * self.updates_per_epoch:
            for p in self.head.last_layer_parameters():
                p.grad = None  # AdamW skips a parameter without a gradient entirely, as in DINO

    def after_step(self, step, total_steps):
        self._update_center()
        self.progress.copy_(torch.tensor([step, total_steps]))
        m = cosine_momentum(step, total_steps, self.params["momentum_teacher"])
        ema_update(self.teacher["encoder"], self.encoder, m)
        ema_update(self.teacher["head"], self.head, m)
