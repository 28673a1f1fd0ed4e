"""When the engine checkpoints (an interval of updates, the end, the preemption signal), that a run resumed from
a checkpoint taken in the middle of an epoch ends like one that never stopped, with and without loader workers,
that the workers start once per run rather than once per epoch, and that only the latest two checkpoints stay."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from harness.checkpoint import previous_path
from harness.engine import InterruptedTraining, TrainConfig, train


class NoisyPoints(Dataset):
    """Items with an augmentation drawn from the global torch RNG (as image transforms do); records the process
    that loaded each item."""

    def __init__(self, n: int = 10, pid_log=None):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.randn(4, 1, generator=g)
        self.pid_log = pid_log

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        if self.pid_log is not None:
            with open(self.pid_log, "a") as f:
                f.write(f"{os.getpid()}\n")
        return self.x[i] + 0.1 * torch.randn(4), self.y[i]


def _run(ckpt, cfg: TrainConfig, stop: int | None = None, dataset: Dataset | None = None):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)

    def step(batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y), {}

    try:
        state = train(model, step, dataset or NoisyPoints(), cfg, ckpt, stop_after_updates=stop)
    except InterruptedTraining:
        return None, None
    return model.state_dict(), state


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=4, total_updates=11, warmup_updates=1, lr=1e-2, weight_decay=0.0, seed=1,
                checkpoint_every_updates=0, checkpoint_every_s=0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_the_middle_of_an_epoch_ends_like_a_straight_run(tmp_path, workers):
    cfg = _cfg(num_workers=workers)
    straight, straight_state = _run(tmp_path / "a.pt", cfg)
    assert _run(tmp_path / "b.pt", cfg, stop=3) == (None, None)  # 2 updates per epoch: update 3 is mid-epoch
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3
    resumed, resumed_state = _run(tmp_path / "b.pt", cfg)
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert [r["loss"] for r in resumed_state.history] == [r["loss"] for r in straight_state.history]
    assert [r["step"] for r in resumed_state.history] == [2, 4, 6, 8, 10, 11]


def test_checkpoints_follow_the_update_interval_and_only_the_latest_two_stay(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    _run(ckpt, _cfg(checkpoint_every_updates=4, total_updates=10))
    latest, previous = ckpt, previous_path(ckpt)
    assert torch.load(latest, weights_only=True)["step"] == 10  # the end
    assert torch.load(previous, weights_only=True)["step"] == 8  # the last interval
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([latest.name, previous.name])


def test_no_checkpoint_at_epoch_ends_without_an_interval(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    assert _run(ckpt, _cfg(total_updates=10)) and not previous_path(ckpt).exists()  # one write: the end


def test_preemption_signal_checkpoints_at_the_end_of_the_update_then_calls_the_schedulers_handler(tmp_path):
    calls = []

    class Requeued(Exception):
        pass

    def scheduler_handler(signum, frame):  # submitit's: requeue, then exit
        calls.append(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"])
        raise Requeued

    previous = signal.signal(signal.SIGUSR2, scheduler_handler)
    try:
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        seen = []

        def step(batch):
            seen.append(1)
            if len(seen) == 5:
                os.kill(os.getpid(), signal.SIGUSR2)  # arrives in the middle of update 5
            x, y = batch
            return nn.functional.mse_loss(model(x), y), {}

        with pytest.raises(Requeued):
            train(model, step, NoisyPoints(), _cfg(), tmp_path / "checkpoint.pt")
        assert calls == [5]
        assert signal.getsignal(signal.SIGUSR2) is scheduler_handler  # restored after training
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_loader_workers_start_once_per_run_not_per_epoch(tmp_path):
    pids = tmp_path / "pids.txt"
    _run(tmp_path / "c.pt", _cfg(num_workers=2, total_updates=10), dataset=NoisyPoints(pid_log=pids))  # 5 epochs
    assert len(set(pids.read_text().split())) == 2


class SignalledPoints(NoisyPoints):
    """Every item load signals its own process, as SLURM signals every process of a job step on preemption."""

    def __getitem__(self, i):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR2)
        return super().__getitem__(i)


def test_loader_workers_survive_the_schedulers_signals(tmp_path):
    weights, state = _run(tmp_path / "d.pt", _cfg(num_workers=2, total_updates=4), dataset=SignalledPoints())
    assert state.step == 4
