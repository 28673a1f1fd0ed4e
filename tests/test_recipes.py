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
    assert default_layer_decay(encoder_config("vit-b16").__class__(224, 16, 1024, 24, 16)) == 0.75
    assert TASKS.get("finetune").resolved_params("paper")["warmup_epochs"] == 20


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_finetune_reads_a_mean_pooling_encoder_with_fc_norm(tmp_path, monkeypatch):
    from harness.tasks import TaskContext
    from harness.tasks import finetune as ft

    save_encoder(build_encoder(CFG), CFG, tmp_path / "encoder.pt", pool="mean")
    paper_recipe = {k: TASKS.get("finetune").resolved_params("paper")[k]
                    for k in ("auto_augment", "reprob", "mixup", "cutmix", "crop_min_scale")}
    params = TASKS.get("finetune").resolved_params("tiny", {"epochs": 1, "batch_size": 128, **paper_recipe})
    built = []
    original = ft.build_encoder
    monkeypatch.setattr(ft, "build_encoder", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    (tmp_path / "job").mkdir()
    ctx = TaskContext(job_dir=tmp_path / "job", params=params, encoder_cfg=CFG, encoder_path=tmp_path / "encoder.pt",
                      dataset="synthetic-objects", seed=0, device=torch.device("cpu"), scale="tiny")
    rows = ft.FineTune().run(ctx)
    assert built[0].global_pool == "avg" and not isinstance(built[0].fc_norm, torch.nn.Identity)
    assert {r["name"] for r in rows} == {"top1", "top5", "train_loss"}


def test_dino_weight_decay_follows_a_cosine_from_0_04_to_0_4(tmp_path, monkeypatch):
    from torch.utils.data import TensorDataset

    from harness import engine
    from harness.optim import set_weight_decay

    seen = []
    monkeypatch.setattr(engine, "set_weight_decay", lambda opt, wd: (seen.append(wd), set_weight_decay(opt, wd)))
    params = METHODS.get("dino").resolved_params("paper")
    assert (params["weight_decay"], params["weight_decay_end"]) == (0.04, 0.4)
    model = torch.nn.Linear(3, 1)
    cfg = engine.TrainConfig(batch_size=2, total_updates=5, warmup_updates=0, lr=1e-3, weight_decay=0.04,
                             weight_decay_end=0.4)
    engine.train(model, lambda b: (model(b[0]).pow(2).mean(), {}), TensorDataset(torch.randn(10, 3)), cfg,
                 tmp_path / "ckpt.pt", device=torch.device("cpu"))
    assert seen[0] == pytest.approx(0.04) and seen == sorted(seen) and seen[-1] < 0.4
    optimizer = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": 0.0},
                                   {"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": 0.04}])
    set_weight_decay(optimizer, 0.3)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.3]  # exclusions stay excluded


def test_dino_freezes_its_last_layer_during_the_first_epoch_and_norms_it_per_architecture():
    from harness.methods.dino import norm_last_layer

    params = METHODS.get("dino").resolved_params("tiny", {"out_dim": 16})
    dino = METHODS.get("dino")(CFG, params)
    dino.updates_per_epoch = 3.0
    for step, frozen in ((0, True), (2, True), (3, False)):
        for p in dino.head.parameters():
            p.grad = torch.ones_like(p)
        dino.before_optimizer_step(step, 10)
        assert (dino.head.last_layer_direction.grad is None) == frozen
        assert dino.head.mlp[0].weight.grad is not None
    paper = METHODS.get("dino").resolved_params("paper")
    assert paper["freeze_last_layer"] == 1 and paper["norm_last_layer"] is None
    assert norm_last_layer(paper, encoder_config("vit-b16")) is True
    assert norm_last_layer(paper, encoder_config("vit-s16")) is False


def test_supervised_trains_with_deits_mixup_and_augmentation():
    from PIL import Image

    params = METHODS.get("supervised").resolved_params("paper", {"drop_path": 0.0})
    method = METHODS.get("supervised")(CFG, params, num_classes=4)
    image = Image.new("RGB", (20, 20), (10, 200, 30))
    images = torch.stack([method.train_transform()(image) for _ in range(4)])
    loss, logs = method.training_step((images, torch.tensor([0, 1, 2, 3])))
    loss.backward()
    assert torch.isfinite(loss) and method.mixup is not None and method.head.weight.grad is not None


def test_supervised_is_deit_and_repeats_each_drawn_image_three_times():
    from harness.engine import TrainConfig, epoch_order

    p = METHODS.get("supervised").resolved_params("paper")
    assert (p["auto_augment"], p["mixup"], p["cutmix"], p["label_smoothing"], p["reprob"], p["repeated_aug"],
            p["crop_min_scale"]) == ("rand-m9-mstd0.5-inc1", 0.8, 1.0, 0.1, 0.25, 3, 0.08)
    order = epoch_order(12, TrainConfig(batch_size=6, total_updates=1, warmup_updates=0, lr=1.0, repeated_aug=3), 0)
    assert len(order) == 12 and all(order[i] == order[i + 1] == order[i + 2] for i in range(0, 12, 3))


def test_plan_shows_every_resolved_parameter_set(tmp_path):
    from harness.plan import resolved_params_lines

    lines = resolved_params_lines(_downstream_study(tmp_path, ["none", "mae"]))
    assert any(line.startswith("  method mae:") and " blr=" in line and " lr=" in line for line in lines)
    finetune = [line for line in lines if line.startswith("  task finetune on synthetic-objects:")]
    assert len(finetune) == 2 and {"pool=cls" in line for line in finetune} == {True, False}


def test_tiny_warm_up_keeps_each_references_proportion_of_the_run():
    from harness.schedule import downstream_schedule, pretrain_schedule

    # BEiT: 10 warm-up epochs of 800; fine-tuning: 20 of 100, whatever the run's length (MAE, DINO and supervised:
    # the third of the run that the calibration chose)
    for name, share in (("beit", 10 / 800), ("splitmask", 10 / 800), ("mae", 1 / 3), ("supervised", 1 / 3)):
        params = METHODS.get(name).resolved_params("tiny")
        for epochs in (3, 30):
            sched = pretrain_schedule(2000, 2000, 64, epochs, "fixed-updates", params)
            assert sched["warmup_updates"] == round(share * sched["total_updates"]), (name, epochs)
    finetune = TASKS.get("finetune").resolved_params("tiny", {"epochs": 10})
    assert downstream_schedule(finetune, 640).warmup_updates == 20  # 20 % of 100 updates
    # the paper scale counts the references' own epochs
    paper = METHODS.get("beit").resolved_params("paper")
    assert pretrain_schedule(2048 * 100, 2048 * 100, 2048, 300, "fixed-updates", paper)["warmup_updates"] == 1000


def test_a_studys_warm_up_replaces_the_declared_one_whatever_its_unit():
    by_epochs = METHODS.get("beit").resolved_params("tiny", {"warmup_epochs": 2})
    assert by_epochs["warmup_fraction"] is None and by_epochs["warmup_epochs"] == 2
    by_share = METHODS.get("beit").resolved_params("paper", {"warmup_fraction": 0.1})
    assert by_share["warmup_fraction"] == 0.1 and by_share["warmup_epochs"] is None
    with pytest.raises(ValueError, match="warmup_fraction: must be a share of the run"):
        METHODS.get("beit").resolved_params("tiny", {"warmup_fraction": 2.0})


def test_a_scale_takes_the_defaults_of_the_scale_its_name_extends():
    dino = METHODS.get("dino")
    assert dino.resolved_params("tiny-long") == dino.resolved_params("tiny")
    assert dino.resolved_params("paper-vits") == dino.resolved_params("paper")
    assert dino.resolved_params("cluster") == dino.resolved_params("paper")
    assert dino.resolved_params("tiny-long")["out_dim"] != dino.resolved_params("paper")["out_dim"]
