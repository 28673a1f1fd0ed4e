"""Cost of each pre-training method's train step, relative to a bare timm encoder forward+backward over all
patches of the same batch, measured side by side in one run, next to the ratio the FLOPs predict
(``torch.utils.flop_counter``). A script that prints ratios, not a test:

    PYTHONPATH=. python benchmarks/methods_bench.py [--model vit-small-64] [--batch 64] [--threads 2]
    PYTHONPATH=.:/tmp/lightly-target python benchmarks/methods_bench.py --lightly   # + lightly's MAE and DINO
    PYTHONPATH=. python benchmarks/methods_bench.py --paper-flops                  # FLOP ratios at paper scale

"time ratio" = method step time / bare encoder fwd+bwd time; "FLOP ratio" = the same for counted FLOPs;
"time/FLOP" = how far the implementation is from what its FLOPs predict (goal: <= 1.15).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode

from harness.methods import METHODS
from harness.models.vit import build_encoder, encoder_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(step: Callable[[], None], device: torch.device, iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count_flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def random_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    g = torch.Generator().manual_seed(seed)
    return [Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


def method_batch(method, images: list[Image.Image]):
    transform = method.train_transform()
    collate = method.collate_fn() or default_collate
    return collate([(transform(img), 0) for img in images])


def to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return type(batch)(to_device(b, device) for b in batch)


def full_images(batch) -> torch.Tensor:
    """The batch's images at the encoder's size (DINO: its first global crop)."""
    x = batch[0]
    while not isinstance(x, torch.Tensor):
        x = x[0]
    return x


def build_method(name: str, model: str, device: torch.device, overrides: dict | None = None, scale: str = "tiny"):
    cls = METHODS.get(name)
    method = cls(encoder_config(model), cls.resolved_params(scale, overrides or {}), num_classes=10).to(device)
    if hasattr(method, "tokenizer"):  # the vocabulary's content does not change the cost
        method.tokenizer.vocab.copy_(F.normalize(torch.rand_like(method.tokenizer.vocab), dim=-1))
    return method


def method_step(method, batch, amp: bool) -> Callable[[], None]:
    def step():
        method.zero_grad(set_to_none=True)
        with torch.autocast(full_images(batch).device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = method.training_step(batch)
        loss.backward()
        method.after_step(1, 100)
    return step


def bare_step(encoder, images: torch.Tensor, amp: bool) -> Callable[[], None]:
    def step():
        encoder.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            out = encoder.forward_features(images)
        out.float().mean().backward()
    return step


# ---------------------------------------------------------------- lightly's MAE and DINO on the same model

def lightly_mae_step(method, images: torch.Tensor, amp: bool) -> Callable[[], None]:
    from lightly.models import utils
    from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM

    p, cfg = method.params, method.encoder_cfg
    vit = copy.deepcopy(method.encoder)
    backbone = MaskedVisionTransformerTIMM(vit=vit)
    decoder = MAEDecoderTIMM(num_patches=cfg.num_patches, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
                             decoder_embed_dim=p["decoder_dim"], decoder_depth=p["decoder_depth"],
                             decoder_num_heads=p["decoder_heads"]).to(images.device)
    seq = backbone.sequence_length

    def step():
        backbone.zero_grad(set_to_none=True)
        decoder.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            b = images.shape[0]
            idx_keep, idx_mask = utils.random_token_mask(size=(b, seq), mask_ratio=p["mask_ratio"], device=images.device)
            encoded = backbone.encode(images=images, idx_keep=idx_keep)
            x = decoder.embed(encoded)
            x_masked = utils.repeat_token(decoder.mask_token, (b, seq))
            x_masked = utils.set_at_index(x_masked, idx_keep, x.type_as(x_masked))
            pred = decoder.predict(utils.get_at_index(decoder.decode(x_masked), idx_mask))
            target = utils.get_at_index(utils.patchify(images, cfg.patch_size), idx_mask - 1)
            loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
    return step


def lightly_dino_step(method, crops: list[torch.Tensor], amp: bool) -> Callable[[], None]:
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import update_momentum

    p, cfg = method.params, method.encoder_cfg
    device = crops[0].device
    student = build_encoder(cfg, dynamic_img_size=True).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    head_args = (cfg.embed_dim, p["head_hidden_dim"], p["head_bottleneck_dim"], p["out_dim"])
    s_head = DINOProjectionHead(*head_args).to(device)
    t_head = DINOProjectionHead(*head_args).to(device)  # weight_norm modules cannot be deep-copied
    t_head.load_state_dict(s_head.state_dict())
    t_head.requires_grad_(False)
    criterion = DINOLoss(output_dim=p["out_dim"], warmup_teacher_temp_epochs=0).to(device)

    def step():
        student.zero_grad(set_to_none=True)
        s_head.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            teacher_out = [t_head(teacher(v)) for v in crops[:2]]
            student_out = [s_head(student(v)) for v in crops]
            loss = criterion(teacher_out, student_out, epoch=0)
        loss.backward()
        update_momentum(student, teacher, 0.996)
        update_momentum(s_head, t_head, 0.996)
    return step


# ---------------------------------------------------------------- main

def bench(args) -> None:
    device = torch.device(args.device)
    amp = device.type == "cuda"
    cfg = encoder_config(args.model)
    images = random_images(args.batch, cfg.img_size)
    names = [n for n in METHODS.names() if METHODS.get(n).uses_data and (not args.methods or n in args.methods)]
    print(f"model {args.model} ({cfg.num_patches} patches), batch {args.batch}, device {device}, "
          f"threads {torch.get_num_threads()}, amp {'bf16' if amp else 'off'}, median of {args.iters} steps")
    print(f"{'method':<18}{'step ms':>9}{'bare ms':>9}{'time ratio':>12}{'FLOP ratio':>12}{'time/FLOP':>11}")
    rows = []
    for name in names:
        method = build_method(name, args.model, device)
        batch = to_device(method_batch(method, images), device)
        bare = bare_step(method.encoder, full_images(batch), amp)
        step = method_step(method, batch, amp)
        rows.append((name, step, bare))
        if args.lightly and name == "mae":
            rows.append(("mae (lightly)", lightly_mae_step(method, full_images(batch), amp), bare))
        if args.lightly and name == "dino":
            rows.append(("dino (lightly)", lightly_dino_step(method, batch[0], amp), bare))
    for name, step, bare in rows:
        flop_ratio = count_flops(step) / count_flops(bare)
        # interleave method and bare timings so that both see the same machine load
        t_step, t_bare = [], []
        for _ in range(args.rounds):
            t_bare.append(median_time(bare, device, args.iters))
            t_step.append(median_time(step, device, args.iters))
        ts, tb = statistics.median(t_step), statistics.median(t_bare)
        print(f"{name:<18}{ts * 1e3:>9.1f}{tb * 1e3:>9.1f}{ts / tb:>12.2f}{flop_ratio:>12.2f}{ts / tb / flop_ratio:>11.2f}",
              flush=True)


def paper_flops(args) -> None:
    """FLOP ratios at the paper's scale (the source of each method's ``relative_cost``)."""
    print("FLOP ratio per image at paper scale (batch 2, CPU): method step / bare encoder fwd+bwd")
    for name in [n for n in METHODS.names() if METHODS.get(n).uses_data]:
        model = "vit-s16" if name == "dino" else "vit-b16"
        method = build_method(name, model, torch.device("cpu"), scale="paper")
        batch = method_batch(method, random_images(2, 224))
        ratio = count_flops(method_step(method, batch, False)) / count_flops(bare_step(method.encoder, full_images(batch), False))
        print(f"{name:<12}{model:<9}{ratio:>8.2f}   (relative_cost = {METHODS.get(name).relative_cost})", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit-small-64")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--methods", nargs="*", help="only these methods (default: every method that trains)")
    ap.add_argument("--lightly", action="store_true", help="also time lightly's MAE and DINO (lightly importable)")
    ap.add_argument("--paper-flops", action="store_true", help="only print FLOP ratios at paper scale")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    paper_flops(args) if args.paper_flops else bench(args)


if __name__ == "__main__":
    sys.exit(main())
