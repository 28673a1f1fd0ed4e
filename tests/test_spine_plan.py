"""Plan: grid expansion, identities (stable, sensitive to every field, blind to resources), schedules."""

from __future__ import annotations

import copy

import pytest

from harness.plan import identity, make_plan
from harness.spec import load_study
from tests.micro import write_micro


@pytest.fixture
def plan(tmp_path):
    return make_plan(load_study(write_micro(tmp_path)))


def test_grid_expands_methods_fractions_and_downstream(plan):
    pre = plan.pretrain
    # random init has no data axis: one job per seed, not one per fraction
    assert sorted(j.coords["method"] for j in pre) == ["none", "supervised", "supervised"]
    assert sorted(j.coords["fraction"] for j in pre if j.coords["method"] == "supervised") == [0.1, 0.2]
    assert len(plan.downstream) == 3
    for d in plan.downstream:
        assert d.upstream in plan.by_id() and d.config["upstream"] == d.upstream


def test_ids_are_readable_and_stable(tmp_path, plan):
    again = make_plan(load_study(write_micro(tmp_path)))
    assert [j.id for j in plan.jobs] == [j.id for j in again.jobs]
    sup = next(j for j in plan.pretrain if j.coords["fraction"] == 0.1)
    assert sup.id.startswith("pre-supervised-synobj-f0.10-e3-s0-") and len(sup.id.rsplit("-", 1)[1]) == 8


def test_every_config_field_changes_the_identity(plan):
    job = next(j for j in plan.pretrain if j.coords["method"] == "supervised")

    def leaves(d, path=()):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, path + (k,))
            else:
                yield path + (k,)

    base = identity(job.config)
    for path in leaves(job.config):
        changed = copy.deepcopy(job.config)
        target = changed
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = ["changed", target[path[-1]]]
        assert identity(changed) != base, path


def test_resources_and_results_location_do_not_change_identity(tmp_path):
    a = make_plan(load_study(write_micro(tmp_path)))
    other = tmp_path / "other"
    other.mkdir()
    path = write_micro(other)
    text = path.read_text().replace("device: cpu", "device: cpu\n    resources: {pretrain: {mem_gb: 64, timeout_min: 999}}")
    path.write_text(text)
    b = make_plan(load_study(path))
    assert b.study.scale.resources.pretrain.mem_gb == 64
    assert [j.id for j in a.jobs] == [j.id for j in b.jobs]


def test_manifest_hash_and_upstream_enter_identities(plan):
    sup = [j for j in plan.pretrain if j.coords["method"] == "supervised"]
    assert sup[0].config["data"]["manifest"] != sup[1].config["data"]["manifest"]
    downs = {d.upstream: d for d in plan.downstream}
    # same task and parameters, different upstream -> different identity
    assert len({identity(d.config) for d in downs.values()}) == len(downs)


def test_fixed_updates_keeps_the_number_of_updates_across_fractions(tmp_path):
    plan = make_plan(load_study(write_micro(tmp_path, schedule="fixed-updates", fractions=[0.1, 1.0])))
    sched = {j.coords["fraction"]: j.config["schedule"] for j in plan.pretrain if j.coords["method"] == "supervised"}
    assert sched[0.1]["total_updates"] == sched[1.0]["total_updates"]
    # 10% of the images for ~10x the epochs (the paper: 10% for ~3000 epochs = 300 full epochs)
    assert sched[0.1]["subset_epochs"] == pytest.approx(10 * sched[1.0]["subset_epochs"], rel=0.15)


def test_fixed_epochs_scales_updates_with_the_fraction(tmp_path):
    plan = make_plan(load_study(write_micro(tmp_path, schedule="fixed-epochs", fractions=[0.1, 1.0])))
    sched = {j.coords["fraction"]: j.config["schedule"] for j in plan.pretrain if j.coords["method"] == "supervised"}
    assert sched[1.0]["total_updates"] == pytest.approx(10 * sched[0.1]["total_updates"], rel=0.15)


def test_paper_methods_not_implemented_are_reported_not_crashed(tmp_path, monkeypatch):
    from harness.errors import HarnessError
    from harness.launch import launch
    from harness.methods import METHODS

    # pretend DINO is not implemented yet: the paper's method list still plans, with DINO marked unavailable
    monkeypatch.delitem(METHODS._entries, "dino")
    plan = make_plan(load_study(write_micro(tmp_path, methods=["supervised", "dino"])))
    bad = [j for j in plan.jobs if j.unavailable]
    assert bad and all("'dino' is not implemented" in j.unavailable for j in bad)
    assert all(j.coords["method"] == "dino" for j in bad)
    with pytest.raises(HarnessError, match="dino"):
        launch(plan, executor="debug", results_root=tmp_path / "r")


def test_a_new_dataset_version_gives_new_ids_to_every_job_that_reads_the_set(tmp_path, monkeypatch, plan):
    """A regenerated synthetic set may keep its file names and labels, which is all an index hash sees: its
    generator version enters the ids of the pre-training jobs on it and, through the dataset fingerprint, of
    every downstream job on it, random init's fine-tune included (its upstream reads no data)."""
    import harness.data

    monkeypatch.setattr(harness.data, "dataset_version", lambda name: 99)
    again = make_plan(load_study(write_micro(tmp_path)))
    before = {j.id for j in plan.jobs}
    none = next(j for j in again.pretrain if j.coords["method"] == "none")
    assert none.id in before
    changed = [j for j in again.jobs if j is not none]
    assert len(changed) == 5 and not any(j.id in before for j in changed)
    assert all(d.config["dataset_fingerprint"] != plan.downstream[0].config["dataset_fingerprint"] for d in again.downstream)


def test_a_downstream_job_refuses_a_dataset_changed_since_planning(tmp_path, plan):
    from harness import results as R
    from harness.job import JobSpec, run_downstream

    down = next(d for d in plan.downstream if d.upstream.startswith("pre-none"))
    up = tmp_path / "study" / down.upstream
    up.mkdir(parents=True)
    (up / R.METRICS).write_text("{}")
    (up / R.ENCODER).write_bytes(b"")
    config = {**down.config, "dataset_fingerprint": "0" * 16}
    spec = JobSpec(job_id=down.id, stage="downstream", config=config, coords=down.coords, study="micro",
                   scale="tiny", study_dir=str(tmp_path / "study"), upstream=down.upstream, device="cpu")
    with pytest.raises(RuntimeError, match="changed since this job was planned"):
        run_downstream(spec)
