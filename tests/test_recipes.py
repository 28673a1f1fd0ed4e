"""Recipes: how each method's encoder is read (pooling) travels with encoder.pt and into downstream job ids;
learning rates follow each reference's scaling rule; fine-tuning builds BEiT's model and head."""

from __future__ import annotations

import pytest
import torch
import yaml

from harness.methods import METHODS
from harness.models.vit import build_encoder, encoder_config, encoder_pooling, load_encoder_weights, save_encoder
from harness.plan import make_plan
from harness.spec import load_study
from harness.tasks import TASKS
from harness.tasks.finetune import default_layer_decay, scale_head
from tests.micro import MICRO, write_micro

CFG = encoder_config("vit-tiny-16")


def test_methods_declare_the_pooling_of_their_references():
    expected = {"beit": "mean", "mae": "mean", "splitmask": "mean", "dino": "cls", "supervised": "cls", "none": "cls"}
    assert {name: cls.pooling for name, cls in METHODS.items()} == expected


def test_pooling_travels_with_encoder_pt(tmp_path):
    save_encoder(build_encoder(CFG), CFG, tmp_path / "encoder.pt", pool="mean")
    assert encoder_pooling(tmp_path / "encoder.pt") == "mean"
    with pytest.raises(ValueError, match="unknown pooling"):
        save_encoder(build_encoder(CFG), CFG, tmp_path / "bad.pt", pool="max")


def test_a_mean_pooling_model_drops_the_pretrained_norm_for_a_new_fc_norm(tmp_path):
    torch.manual_seed(0)
    pretrained = build_encoder(CFG)
    save_encoder(pretrained, CFG, tmp_path / "encoder.pt", pool="mean")
    model = build_encoder(CFG, num_classes=5, global_pool="avg")
    load_encoder_weights(model, tmp_path / "encoder.pt")
    assert torch.equal(model.blocks[0].attn.qkv.weight, pretrained.blocks[0].attn.qkv.weight)
    assert isinstance(model.norm, torch.nn.Identity) and torch.equal(model.fc_norm.weight, torch.ones(CFG.embed_dim))


def _downstream_study(tmp_path, methods, params=None):
    data = yaml.safe_load(yaml.safe_dump(MICRO))
    tiny = data["scales"]["tiny"]
    tiny["pretrain"]["methods"] = methods
    tiny["pretrain"]["method_params"] = {}
    tiny["downstream"] = [{"task": t, "dataset": "synthetic-objects", "params": dict(params or {})}
                          for t in ("finetune", "knn", "linear_probe")]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return make_plan(load_study(path))


def test_plan_resolves_each_methods_pooling_into_downstream_params_and_ids(tmp_path):
    plan = _downstream_study(tmp_path, ["none", "mae"])
    pools = {(j.coords["method"], j.config["task"]): j.config["params"]["pool"] for j in plan.downstream}
    assert set(pools.values()) == {"cls", "mean"}
    assert all(pool == ("mean" if method == "mae" else "cls") for (method, _), pool in pools.items())
    overridden = _downstream_study(tmp_path, ["none", "mae"], {"pool": "cls"})
    assert all(j.config["params"]["pool"] == "cls" for j in overridden.downstream)
    ids = {j.coords["method"] + j.config["task"]: j.id for j in plan.downstream}
    for j in overridden.downstream:  # the study's override changes only the mae jobs' identities
        assert (j.id == ids[j.coords["method"] + j.config["task"]]) == (j.coords["method"] == "none")


def test_learning_rates_follow_each_references_scaling_rule():
    mae = METHODS.get("mae").resolved_params("paper")
    assert mae["lr"] == pytest.approx(1.5e-4 * 4096 / 256)
    assert METHODS.get("mae").resolved_params("paper", {"batch_size": 1024})["lr"] == pytest.approx(1.5e-4 * 4)
    sup = METHODS.get("supervised").resolved_params("paper")
    assert sup["lr_ref_batch"] == 512 and sup["lr"] == pytest.approx(5e-4 * 1024 / 512)
    assert METHODS.get("dino").resolved_params("paper")["lr"] == pytest.approx(5e-4 * 1024 / 256)
    assert TASKS.get("finetune").resolved_params("paper")["lr"] == pytest.approx(4e-3)
    assert METHODS.get("beit").resolved_params("tiny", {"lr": 1e-4})["lr"] == 1e-4  # an explicit lr wins
    for name, cls in METHODS.items():  # no scale carries an absolute lr of its own
        for scale in ("tiny", "paper"):
            assert "lr" not in cls.defaults[scale], (name, scale)


def test_batch_size_change_in_a_study_changes_the_lr_and_the_id(tmp_path):
    base = make_plan(load_study(write_micro(tmp_path)))
    other = make_plan(load_study(write_micro(tmp_path, method_params={"supervised": {"batch_size": 16}})))
    lr = {j.config["params"]["lr"] for j in base.pretrain if j.coords["method"] == "supervised"}
    lr_other = {j.config["params"]["lr"] for j in other.pretrain if j.coords["method"] == "supervised"}
    assert lr_other == {x / 2 for x in lr}


def test_finetune_head_starts_at_beits_init_scale_and_layer_decay_follows_size():
    torch.manual_seed(0)
    model = build_encoder(CFG, num_classes=10)
    std = model.head.weight.std().item()
    scale_head(model.head, 0.001)
    assert model.head.weight.std().item() == pytest.approx(std * 0.001)
    assert default_layer_decay(encoder_config("vit-b16")) == 0.65
    assert default_layer_decay(encoder_config("vit-s16")) == 0.65
    assert TASKS.get("finetune").resolved_params("paper")["warmup_epochs"] == 20


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_finetune_reads_a_mean_pooling_encoder_with_fc_norm(tmp_path, monkeypatch):
    from harness.tasks import TaskContext
    from harness.tasks import finetune as ft

    save_encoder(build_encoder(CFG), CFG, tmp_path / "encoder.pt", pool="mean")
    params = TASKS.get("finetune").resolved_params("tiny", {"epochs": 1, "batch_size": 128})
    built = []
    original = ft.build_encoder
    monkeypatch.setattr(ft, "build_encoder", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    (tmp_path / "job").mkdir()
    ctx = TaskContext(job_dir=tmp_path / "job", params=params, encoder_cfg=CFG, encoder_path=tmp_path / "encoder.pt",
                      dataset="synthetic-objects", seed=0, device=torch.device("cpu"), scale="tiny")
    rows = ft.FineTune().run(ctx)
    assert built[0].global_pool == "avg" and not isinstance(built[0].fc_norm, torch.nn.Identity)
    assert {r["name"] for r in rows} == {"top1", "top5", "train_loss"}
