"""Resources that fit the job: random init asks for no GPU, a study gives each method's stages their own
resources, gradient accumulation is a resource (the effective batch is the identity, its split is not) and is
refused for methods whose batch statistics micro-batches would change; ``plan`` shows GPU-hours per stage and
per method; SLURM arrays group jobs that ask for the same resources."""

from __future__ import annotations

import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.launch import job_spec
from harness.plan import make_plan
from harness.spec import load_study
from tests.micro import write_micro

GPU_STAGES = {"pretrain": {"nodes": 2, "gpus_per_node": 8, "tasks_per_node": 8},
              "downstream": {"gpus_per_node": 4, "tasks_per_node": 4}}


def _study(tmp_path, resources: dict, methods=("none", "supervised", "mae")):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_micro(tmp_path, methods=list(methods), method_params={})
    data = yaml.safe_load(path.read_text())
    data["scales"]["tiny"]["device"] = "auto"
    data["scales"]["tiny"]["resources"] = resources
    path.write_text(yaml.safe_dump(data))
    return path


def test_random_init_asks_for_no_gpu_but_its_downstream_jobs_do(tmp_path):
    plan = make_plan(load_study(_study(tmp_path, GPU_STAGES)))
    by_method = {j.coords["method"]: j.resources for j in plan.pretrain}
    assert by_method["none"].gpus_per_node == 0 and by_method["none"].nodes == 1
    assert by_method["supervised"].gpus_per_node == 8 and by_method["supervised"].nodes == 2
    assert all(j.resources.gpus_per_node == 4 for j in plan.downstream)


def test_each_method_can_have_its_own_resources_per_stage(tmp_path):
    resources = {**GPU_STAGES, "methods": {"mae": {"pretrain": {"nodes": 1, "grad_accumulation": 2},
                                                   "downstream": {"timeout_min": 5}}}}
    plan = make_plan(load_study(_study(tmp_path, resources)))
    mae = next(j for j in plan.pretrain if j.coords["method"] == "mae")
    sup = next(j for j in plan.pretrain if j.coords["method"] == "supervised")
    assert (mae.resources.nodes, mae.resources.gpus_per_node, mae.resources.grad_accumulation) == (1, 8, 2)
    assert (sup.resources.nodes, sup.resources.grad_accumulation) == (2, 1)
    assert {j.resources.timeout_min for j in plan.downstream if j.upstream == mae.id} == {5}
    assert job_spec(mae, plan, tmp_path).grad_accumulation == 2


def test_the_split_of_a_batch_is_not_in_the_identity_the_batch_is(tmp_path):
    plain = make_plan(load_study(_study(tmp_path / "a", GPU_STAGES)))
    split = make_plan(load_study(_study(tmp_path / "b", {**GPU_STAGES, "pretrain": {
        **GPU_STAGES["pretrain"], "grad_accumulation": 4}})))
    assert [j.id for j in plain.jobs] == [j.id for j in split.jobs]
    (tmp_path / "c").mkdir()
    path = write_micro(tmp_path / "c", methods=["none", "supervised", "mae"],
                       method_params={"supervised": {"batch_size": 48}})
    bigger = make_plan(load_study(path))
    assert {j.id for j in bigger.pretrain if j.coords["method"] == "supervised"}.isdisjoint(j.id for j in plain.pretrain)


def test_accumulation_is_refused_for_a_method_with_whole_batch_statistics(tmp_path):
    resources = {**GPU_STAGES, "methods": {"splitmask": {"pretrain": {"grad_accumulation": 2}}}}
    with pytest.raises(ConfigError, match=r"resources\.methods\.splitmask\.pretrain\.grad_accumulation"):
        make_plan(load_study(_study(tmp_path, resources, methods=("splitmask",))))


def test_accumulation_follows_the_parameters_of_a_method(tmp_path):
    def study(folder, mixup):
        path = _study(folder, {"pretrain": {"grad_accumulation": 2}}, methods=("supervised",))
        data = yaml.safe_load(path.read_text())
        data["scales"]["tiny"]["pretrain"]["method_params"] = {"supervised": {"mixup": mixup}}
        path.write_text(yaml.safe_dump(data))
        return path

    assert make_plan(load_study(study(tmp_path / "a", 0.0))).pretrain[0].resources.grad_accumulation == 2
    with pytest.raises(ConfigError, match=r"resources\.pretrain\.grad_accumulation"):  # mixup mixes images
        make_plan(load_study(study(tmp_path / "b", 0.8)))


def test_per_method_resources_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"nodez"):
        load_study(_study(tmp_path / "a", {"methods": {"mae": {"pretrain": {"nodez": 1}}}}))
    with pytest.raises(ConfigError, match=r"resources\.methods.*dino"):
        load_study(_study(tmp_path / "b", {"methods": {"dino": {"pretrain": {"nodes": 1}}}}))


def test_plan_shows_gpu_hours_per_stage_and_method(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    assert main(["plan", str(_study(tmp_path, GPU_STAGES))]) == 0
    out = capsys.readouterr().out
    pre = next(line for line in out.splitlines() if line.startswith("GPU-hours pretrain:"))
    assert "supervised" in pre and "mae" in pre and "none" not in pre  # random init: no GPU, no GPU-hours
    down = next(line for line in out.splitlines() if line.startswith("GPU-hours downstream:"))
    assert "none" in down


def test_slurm_arrays_group_jobs_by_their_resources(tmp_path):
    from harness.launch.profiles import load_profile
    from harness.launch.slurm import submit_slurm

    plan = make_plan(load_study(_study(tmp_path, {**GPU_STAGES, "methods": {"mae": {"pretrain": {"nodes": 1}}}})))
    specs = [job_spec(j, plan, tmp_path) for j in plan.pretrain]
    records = submit_slurm(specs, [], {"pretrain": plan.study.scale.resources.pretrain}, load_profile("ci"), {},
                           tmp_path / "submitit", dry_run=True, job_resources={j.id: j.resources for j in plan.pretrain})
    asked = {jid: (r["parameters"]["nodes"], r["parameters"].get("gpus_per_node", 0)) for r in records for jid in r["jobs"]}
    assert len(records) == 3
    for job in plan.pretrain:
        assert asked[job.id] == {"mae": (1, 8), "none": (1, 0), "supervised": (2, 8)}[job.coords["method"]]
