"""Batch statistics across ranks: SplitMask's loss (InfoNCE negatives gathered from every rank) and its gradients,
and DINO's centre, on a global batch split over 2 gloo processes equal one process on the same batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.methods import METHODS
from harness.models.vit import EncoderConfig
from tests.ranks import spawn_two_ranks

CFG = EncoderConfig(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=2)
BATCH = 8


def _splitmask():
    params = METHODS.get("splitmask").resolved_params("tiny", {"vocab_size": 32})
    torch.manual_seed(0)
    method = METHODS.get("splitmask")(CFG, params)
    method.tokenizer.vocab.copy_(torch.randn(32, 48, generator=torch.Generator().manual_seed(1)))
    return method


def _global_batch():
    g = torch.Generator().manual_seed(2)
    images = torch.randn(BATCH, 3, CFG.img_size, CFG.img_size, generator=g)
    perm = torch.rand(BATCH, CFG.num_patches, generator=g).argsort(dim=1)
    return images, perm[:, :8], perm[:, 8:], torch.randn(BATCH, 16, generator=g)


def _run(rows: slice) -> dict:
    """Loss and gradients of SplitMask on ``rows`` of the global batch, and DINO's centre after one update."""
    method = _splitmask()
    images, vis_a, vis_b, teacher_out = _global_batch()
    loss, logs = method.split_loss(images[rows], vis_a[rows], vis_b[rows])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    dino = METHODS.get("dino")(CFG, METHODS.get("dino").resolved_params("tiny", {"out_dim": 16}))
    dino._add_to_center(teacher_out[rows])
    dino._update_center()
    return {"loss": loss.detach(), "infonce": torch.tensor(logs["infonce"]), "grads": grads, "center": dino.center}


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from harness import distributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    assert distributed.init_from_environment()
    half = BATCH // 2
    result = _run(slice(rank * half, (rank + 1) * half))
    for t in [result["loss"], result["infonce"], *result["grads"].values()]:  # what DDP does: mean over ranks
        dist.all_reduce(t)
        t /= 2
    torch.save(result, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


@pytest.mark.slow
def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path):
    spawn_two_ranks(_worker, str(tmp_path))
    single = _run(slice(None))
    for rank in (0, 1):
        ranked = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        torch.testing.assert_close(ranked["infonce"], single["infonce"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ranked["loss"], single["loss"], rtol=1e-5, atol=1e-5)
        assert ranked["grads"].keys() == single["grads"].keys()
        for name, grad in single["grads"].items():
            torch.testing.assert_close(ranked["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(ranked["center"], single["center"], rtol=1e-5, atol=1e-6)


def test_splitmask_with_an_odd_patch_count_predicts_every_patch():
    from harness.models.masking import random_split

    vis_a, vis_b = random_split(3, 25, 0.5)
    assert vis_a.shape[1] + vis_b.shape[1] == 25
    assert all(sorted(torch.cat([a, b]).tolist()) == list(range(25)) for a, b in zip(vis_a, vis_b))
    cfg = EncoderConfig(img_size=20, patch_size=4, embed_dim=24, depth=1, num_heads=2)
    params = METHODS.get("splitmask").resolved_params("tiny", {"vocab_size": 32})
    method = METHODS.get("splitmask")(cfg, params)
    method.tokenizer.vocab.copy_(torch.randn(32, 48))
    loss, logs = method.split_loss(torch.randn(3, 3, 20, 20), vis_a, vis_b)
    assert torch.isfinite(loss) and logs["infonce"] > 0
