"""A rough compute estimate for ``plan``: FLOPs from the ViT's size, the number of images processed and each
method's relative cost, converted to time with an assumed sustained throughput (stated in the output)."""

from __future__ import annotations

from harness.models.vit import EncoderConfig, encoder_config

# sustained training throughput assumed for the conversion; printed with every estimate
CPU_FLOPS = 2e10  # two CPU cores, fp32
# one A100/H100-class GPU in bf16 at a realistic utilisation; measured through the engine on one H200: 1.85e14
# (supervised ViT-B/16, 64 images per update; benchmarks/results/gpu_check_h200.json, README "GPU")
GPU_FLOPS = 1.5e14


def vit_forward_flops(cfg: EncoderConfig) -> float:
    """Forward FLOPs of one image: per block (8 + 4r)*N*D^2 (projections, MLP of ratio r) + 4*N^2*D (attention)."""
    n, d = cfg.num_patches + 1, cfg.embed_dim
    return cfg.depth * ((8 + 4 * cfg.mlp_ratio) * n * d * d + 4 * n * n * d)


def job_flops(job) -> float:
    """Training FLOPs of a planned job (forward + backward = 3x forward)."""
    from harness.data import get_index
    from harness.methods import METHODS
    from harness.tasks import TASKS

    cfg = encoder_config(job.config["model"])
    per_image = 3 * vit_forward_flops(cfg)
    if job.stage == "pretrain":
        if "schedule" not in job.config or job.config["method"] not in METHODS:
            return 0.0
        cost = METHODS.get(job.config["method"]).relative_cost
        images = job.config["schedule"]["total_updates"] * job.config["params"].get("batch_size", 1)
        return per_image * images * cost
    task = TASKS.get(job.config["task"])
    epochs = job.config["params"].get("epochs", 1)
    try:
        n = len(get_index(job.config["dataset"], "train"))
    except Exception:  # an unindexable dataset only loses its estimate
        return 0.0
    return per_image * epochs * n * task.relative_cost


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
