"""linear_probe and knn: the frozen encoder stays frozen, k-NN votes as DINO's, metrics are in range."""

from __future__ import annotations

import pytest
import torch

from harness.models.vit import build_encoder, encoder_config, save_encoder
from harness.tasks import TASKS, TaskContext
from harness.tasks.knn import knn_scores


pytestmark = pytest.mark.usefixtures("one_thread")


def _context(tmp_path, task: str, **overrides) -> tuple[TaskContext, torch.nn.Module]:
    cfg = encoder_config("vit-tiny-32")
    torch.manual_seed(0)
    encoder = build_encoder(cfg)
    save_encoder(encoder, cfg, tmp_path / "encoder.pt")
    params = TASKS.get(task).resolved_params("tiny", overrides)
    job_dir = tmp_path / task
    job_dir.mkdir()
    ctx = TaskContext(job_dir=job_dir, params=params, encoder_cfg=cfg, encoder_path=tmp_path / "encoder.pt",
                      dataset="synthetic-objects", seed=0, device=torch.device("cpu"), scale="tiny")
    return ctx, encoder


def test_knn_votes_with_exponential_cosine_weights():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    train_y = torch.tensor([0, 0, 1, 2])
    query = torch.tensor([[1.0, 0.05]])
    scores = knn_scores(train_x, train_y, query, num_classes=3, k=3, temperature=0.5)
    sims = torch.nn.functional.normalize(train_x, dim=1) @ torch.nn.functional.normalize(query, dim=1).T
    expected = torch.tensor([[(sims[0] / 0.5).exp() + (sims[1] / 0.5).exp(), (sims[2] / 0.5).exp(), 0.0]])
    torch.testing.assert_close(scores, expected.reshape(1, 3))


@pytest.mark.slow
def test_linear_probe_leaves_the_encoder_unchanged(tmp_path, monkeypatch):
    ctx, _ = _context(tmp_path, "linear_probe", epochs=3)
    before = torch.load(tmp_path / "encoder.pt", weights_only=True)["state_dict"]
    from harness.tasks import _classification

    seen = []
    original = _classification.frozen_encoder

    def spy(c):
        seen.append(original(c))
        return seen[-1]

    monkeypatch.setattr(_classification, "frozen_encoder", spy)
    rows = TASKS.get("linear_probe")().run(ctx)
    after = {k: v for k, v in seen[0].state_dict().items()}
    assert before.keys() <= after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert all(not p.requires_grad for p in seen[0].parameters())
    values = {r["name"]: r["value"] for r in rows}
    assert 0.0 <= values["top1"] <= values["top5"] <= 100.0
    assert torch.isfinite(torch.tensor(values["train_loss"]))


@pytest.mark.slow
def test_knn_task_runs_with_mean_pooling(tmp_path):
    ctx, _ = _context(tmp_path, "knn", pool="mean")
    rows = TASKS.get("knn")().run(ctx)
    values = {r["name"]: r["value"] for r in rows}
    assert set(values) == {"top1", "top5"}
    assert 0.0 <= values["top1"] <= values["top5"] <= 100.0
