"""Training curves: every job writes history.jsonl (scalars at a fixed update interval and at evaluation) and
TensorBoard events in its folder; log.txt lines are JSON."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from harness import results as R
from harness.curves import HISTORY, last_row, read_history, recording
from harness.engine import TrainConfig, train
from harness.launch import launch
from harness.plan import make_plan
from harness.spec import load_study
from tests.micro import write_micro


def _toy_train(tmp_path, total: int, clip=None):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 1))
    cfg = TrainConfig(batch_size=8, total_updates=total, warmup_updates=1, lr=1e-2, clip_grad=clip)

    def step(batch):
        x, y = batch
        return nn.functional.mse_loss(model(x), y), {"mse_term": 1.5}

    return train(model, step, data, cfg, tmp_path / "checkpoint.pt")


def test_the_engine_writes_scalars_every_interval_and_at_the_last_update(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LOG_EVERY", "4")
    with recording(tmp_path, None) as curves:
        _toy_train(tmp_path, total=10)
        curves.eval_rows([{"name": "top1", "value": 50.0, "split": "val"}])
    rows = read_history(tmp_path)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [4, 8, 10]
    for r in train_rows:
        assert r["total"] == 10 and r["mse_term"] == 1.5 and r["lr"] > 0 and r["grad_norm"] > 0
        assert r["loss"] > 0 and r["images_per_s"] > 0
    assert rows[-1] == {**rows[-1], "kind": "eval", "step": 10, "top1": 50.0}
    assert last_row(tmp_path)["step"] == 10


def test_logging_changes_no_result(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LOG_EVERY", "1")
    (tmp_path / "a").mkdir()
    with recording(tmp_path / "a", None):
        logged = _toy_train(tmp_path / "a", total=6)
    plain = _toy_train(tmp_path, total=6)
    assert [r["loss"] for r in logged.history] == [r["loss"] for r in plain.history]


def test_outside_a_job_nothing_is_recorded(tmp_path):
    _toy_train(tmp_path, total=3)
    assert not (tmp_path / HISTORY).exists()


@pytest.mark.slow
def test_every_job_of_a_study_has_history_tensorboard_events_and_json_logs(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("HARNESS_THREADS", "1")
    plan = make_plan(load_study(write_micro(tmp_path, methods=["supervised"], fractions=[0.1])))
    root = tmp_path / "results"
    assert launch(plan, executor="debug", results_root=root).failed == []
    study_dir = root / "micro"
    for job in plan.jobs:
        rows = read_history(study_dir / job.id)
        assert {"train", "eval"} <= {r["kind"] for r in rows}, job.id
        assert any("top1" in r for r in rows if r["kind"] == "eval") or job.stage == "pretrain"
        for line in (study_dir / job.id / R.LOG).read_text().splitlines():
            assert {"time", "level", "logger", "message"} <= set(json.loads(line))
        assert list((study_dir / job.id).glob("events.out.tfevents.*")), job.id  # a run named by the job id
        events = EventAccumulator(str(study_dir / job.id))
        events.Reload()
        assert "train/loss" in events.Tags()["scalars"] and "train/lr" in events.Tags()["scalars"]


def test_last_row_reads_the_newest_row_of_a_kind(tmp_path):
    with open(tmp_path / HISTORY, "w") as f:
        for step in range(1, 2001):
            f.write(json.dumps({"kind": "train", "step": step, "total": 2000, "time": time.time()}) + "\n")
        f.write('{"kind": "tra')  # a row being written
    assert last_row(tmp_path)["step"] == 2000
