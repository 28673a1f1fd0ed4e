"""A rough compute estimate for ``plan``: FLOPs from the ViT's size, the number of images processed and each
method's relative cost, converted to time with an assumed sustained throughput (stated in the output)."""

from __future__ import annotations

from functools import lru_cache

from harness.models.encoders import EncoderConfig, encoder_config

# sustained training throughput assumed for the conversion; printed with every estimate
CPU_FLOPS = 2e10  # two CPU cores, fp32
# one A100/H100-class GPU in bf16 at a realistic utilisation; measured through the engine on one H200: 1.85e14
# (supervised ViT-B/16, 64 images per update; benchmarks/results/gpu_check_h200.json, README "GPU")
GPU_FLOPS = 1.5e14


def vit_forward_flops(cfg: EncoderConfig) -> float:
    """Forward FLOPs of one image: per block (8 + 4r)*N*D^2 (projections, MLP of ratio r) + 4*N^2*D (attention)."""
    n, d = cfg.num_patches + 1, cfg.embed_dim
    return cfg.depth * ((8 + 4 * cfg.mlp_ratio) * n * d * d + 4 * n * n * d)


def job_flops(job, relative_cost: float) -> float:
    """Training FLOPs of a planned job (forward + backward = 3x forward) from the images its schedule reads
    (``harness.schedule``); ``relative_cost`` is its method's or task's cost per image. 0 without a schedule."""
    if not job.schedule:
        return 0.0
    model = job.config["model"]
    key = tuple(sorted(model.items())) if isinstance(model, dict) else model
    return _training_flops_per_image(key) * job.schedule["images"] * relative_cost


@lru_cache
def _training_flops_per_image(model: tuple | str) -> float:
    return 3 * vit_forward_flops(encoder_config(dict(model) if isinstance(model, tuple) else model))


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
