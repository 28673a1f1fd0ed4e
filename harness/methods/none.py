"""``none``: no pre-training; downstream tasks start from the encoder's random initialisation."""

from __future__ import annotations

from harness.methods.base import PretrainMethod, register_method


@register_method("none")
class RandomInit(PretrainMethod):
    description = "no pre-training: random initialisation (the from-scratch baseline)"
    uses_data = False
    # training from scratch is DeiT's recipe, which classifies from the class token; the from-scratch baseline
    # of BEiT's and MAE's tables is that DeiT model
    pooling = "cls"
    relative_cost = 0.0
    defaults = {"tiny": {}, "paper": {}}
