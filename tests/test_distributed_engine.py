"""engine.train with 2 processes (gloo, CPU, no scheduler): each rank takes its half of every global batch,
DDP averages the gradients, so both ranks end with the weights of a single-process run on the same batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from harness.engine import TrainConfig, train
from tests.ranks import spawn_two_ranks

CFG = TrainConfig(batch_size=8, total_updates=6, warmup_updates=1, lr=1e-2, weight_decay=0.0, seed=3)


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=g)
    return TensorDataset(x, x @ torch.randn(5, 1, generator=g))


def _train(out: Path) -> dict:
    torch.manual_seed(0)
    model = nn.Linear(5, 1)

    def step(batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y), {"n": float(len(x))}

    state = train(model, step, _data(), CFG, out / "checkpoint.pt")
    return {"weights": {k: v.clone() for k, v in model.state_dict().items()}, "history": state.history}


def _worker(rank: int, port: int, out: str) -> None:
    from harness import distributed

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    assert distributed.init_from_environment()
    result = _train(Path(out))
    torch.save(result, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path):
    (tmp_path / "ddp").mkdir()
    spawn_two_ranks(_worker, str(tmp_path / "ddp"))
    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    single = _train(tmp_path)
    for k in single["weights"]:
        assert torch.equal(r0["weights"][k], r1["weights"][k])  # DDP kept the copies identical
        torch.testing.assert_close(r0["weights"][k], single["weights"][k], rtol=1e-5, atol=1e-6)
    # each rank saw half of every batch of 8; the logged per-epoch values are averaged over the ranks
    assert [h["n"] for h in r0["history"]] == [4.0] * len(r0["history"])
    assert [h["step"] for h in r0["history"]] == [h["step"] for h in single["history"]]
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()  # written by rank 0


def test_world_size_comes_from_torchrun_or_a_submitit_slurm_job_only(monkeypatch):
    from harness.distributed import scheduler_world_size

    for var in ("WORLD_SIZE", "SLURM_NTASKS", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    assert scheduler_world_size() == 1
    monkeypatch.setenv("SLURM_NTASKS", "4")  # e.g. `harness run --executor local` inside an salloc
    assert scheduler_world_size() == 1
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert scheduler_world_size() == 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert scheduler_world_size() == 2
