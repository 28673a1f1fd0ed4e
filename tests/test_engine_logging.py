"""What the engine logs per epoch (throughput) and how many loader processes each kind of pass gets."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from harness.engine import TrainConfig, eval_workers, train
from harness.methods import METHODS
from harness.tasks import TASKS


def test_each_epoch_logs_its_throughput(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = TensorDataset(torch.randn(20, 3), torch.randn(20, 1))
    cfg = TrainConfig(batch_size=8, total_updates=5, warmup_updates=1, lr=1e-2)

    def step(batch):
        time.sleep(0.02)  # epochs long enough for the logged seconds (3 decimals) to give the rate to ~1 %
        x, y = batch
        return nn.functional.mse_loss(model(x), y), {}

    state = train(model, step, data, cfg, tmp_path / "checkpoint.pt")
    assert [row["step"] for row in state.history] == [2, 4, 5]  # 2 full batches of 8 per epoch
    updates = [2, 2, 1]
    for row, n in zip(state.history, updates):
        assert row["samples_per_s"] == pytest.approx(n * 8 / row["seconds"], rel=0.05)
        assert "peak_mem_gib" not in row  # CUDA only


def test_evaluation_passes_use_no_worker_processes_on_cpu():
    assert eval_workers(torch.device("cpu")) == 0


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).uses_data])
def test_paper_scale_pretraining_loads_data_in_worker_processes(name):
    # without workers a GPU waits on JPEG decoding and augmentation in the training process
    assert METHODS.get(name).resolved_params("paper")["num_workers"] >= 8


@pytest.mark.parametrize("name", ["finetune", "detection", "segmentation"])
def test_paper_scale_downstream_training_loads_data_in_worker_processes(name):
    assert TASKS.get(name).resolved_params("paper")["num_workers"] >= 8
