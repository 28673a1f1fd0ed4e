"""Checkpoints: written atomically with the previous one kept, a corrupt latest falls back to it (saying so),
every file read with ``weights_only=True`` so that a planted pickle runs nothing, and the disk-full message."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from harness import checkpoint
from harness.engine import TrainConfig, train
from harness.errors import StorageError

CFG = TrainConfig(batch_size=4, total_updates=6, warmup_updates=0, lr=1e-2, seed=0, checkpoint_every_updates=2)


def _fit(path, stop=None):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = torch.utils.data.TensorDataset(torch.randn(8, 3))

    def step(batch):
        return (model(batch[0]) + torch.randn(1)).pow(2).mean(), {}

    try:
        train(model, step, data, CFG, path, stop_after_updates=stop)
    except RuntimeError as e:
        if "InterruptedTraining" not in type(e).__name__:
            raise
    return model


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint.save({"rng": checkpoint.rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"step": 1}, path)
    checkpoint.save({"step": 2}, path)
    assert checkpoint.load(path)["step"] == 2
    assert torch.load(checkpoint.previous_path(path), weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"step": 1}, path)
    checkpoint.save({"step": 2}, path)
    path.write_bytes(path.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="harness.checkpoint"):
        assert checkpoint.load(path)["step"] == 1
    assert str(path) in caplog.text and "previous checkpoint" in caplog.text


def test_no_readable_checkpoint_names_the_files(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match=str(path)):
        checkpoint.load(path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"model": payload}, protocol=2))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()


def test_training_resumes_bit_identical_after_the_latest_checkpoint_is_corrupted(tmp_path):
    clean = _fit(tmp_path / "clean" / "checkpoint.pt")
    path = tmp_path / "cut" / "checkpoint.pt"
    _fit(path, stop=4)  # checkpoints after updates 2 and 4 (one epoch = 2 updates)
    path.write_bytes(path.read_bytes()[:100])  # the latest is torn: resume from update 2
    resumed = _fit(path)
    assert torch.equal(clean.weight, resumed.weight) and torch.equal(clean.bias, resumed.bias)


def test_disk_full_while_saving_names_the_file(tmp_path, monkeypatch):
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(StorageError, match=f"no space left on device: {path}"):
        checkpoint.save({"step": 1}, path)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_real_failed_write_names_the_file_and_leaves_no_temporary(tmp_path):
    """torch's own writer, not a stand-in: a file-size limit makes its write fail as a full disk does, with
    torch's errno-less RuntimeError ("unexpected pos ..."), which the user sees as a StorageError."""
    path = tmp_path / "checkpoint.pt"
    script = f"""
import resource, torch
from pathlib import Path
from harness import checkpoint
from harness.errors import StorageError
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
try:
    checkpoint.save({{"model": torch.zeros(100_000)}}, Path({str(path)!r}))
except StorageError as e:
    print("StorageError:", e)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"StorageError: could not write {path} (" in out.stdout and "MiB free" in out.stdout
    assert list(tmp_path.iterdir()) == []
