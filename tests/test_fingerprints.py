"""Results that stay true: every method and task has a stored behaviour fingerprint (a few updates from a fixed
seed at the smallest size, hashed); a change of output without a version bump fails here and says which version
to bump and how to refresh the stored fingerprints. The version and a CPU job's thread count enter job ids."""

from __future__ import annotations

import pytest

from harness import fingerprint as F
from harness.methods import METHODS
from harness.plan import make_plan
from harness.spec import load_study
from harness.tasks import TASKS
from tests.micro import write_micro

STORE = F.load_store()


def test_every_method_and_task_has_a_stored_fingerprint():
    assert sorted(STORE["fingerprints"]) == sorted(F.subjects()), f"refresh with `{F.REFRESH}`"


@pytest.mark.slow
@pytest.mark.parametrize("subject", F.subjects())
def test_fingerprint_matches_or_version_was_bumped(subject):
    if STORE["torch"] != F.torch_version():
        pytest.skip(f"fingerprints are exact for torch {STORE['torch']} (this is {F.torch_version()})")
    problem = F.check(subject, STORE)
    assert problem is None, problem


def test_a_changed_output_without_a_version_bump_names_the_version_to_bump(monkeypatch):
    mae = METHODS.get("mae")
    monkeypatch.setitem(mae.defaults, "tiny", {**mae.defaults["tiny"], "mask_ratio": 0.5})
    problem = F.check("method:mae", STORE)
    version = mae.version
    assert problem is not None and f"mae.py (MAE.version) from {version} to {version + 1}" in problem
    assert F.REFRESH in problem


def test_a_bumped_version_asks_for_a_refresh(monkeypatch):
    monkeypatch.setattr(TASKS.get("knn"), "version", TASKS.get("knn").version + 1)
    problem = F.check("task:knn", STORE)
    assert problem is not None and f"version {TASKS.get('knn').version}" in problem and f"{F.REFRESH} task:knn" in problem


def _ids(tmp_path, **overrides):
    return sorted(j.id for j in make_plan(load_study(write_micro(tmp_path, **overrides))).jobs)


def test_method_and_task_versions_enter_job_ids(tmp_path, monkeypatch):
    before = _ids(tmp_path)
    monkeypatch.setattr(METHODS.get("supervised"), "version", METHODS.get("supervised").version + 1)
    after_method = _ids(tmp_path)
    changed = set(before) - set(after_method)
    assert changed and all("supervised" in i for i in changed)  # the random init keeps its ids
    monkeypatch.setattr(TASKS.get("finetune"), "version", TASKS.get("finetune").version + 1)
    after_task = _ids(tmp_path)
    pretrain = {i for i in after_method if i.startswith("pre-")}
    assert set(after_method) & set(after_task) == pretrain  # every fine-tune job gets a new id


def test_a_cpu_job_fixes_its_thread_count_in_its_identity(tmp_path):
    import yaml

    path = write_micro(tmp_path)
    one = make_plan(load_study(path))
    data = yaml.safe_load(path.read_text())
    data["scales"]["tiny"]["resources"] = {"pretrain": {"cpus_per_task": 2}, "downstream": {"cpus_per_task": 2}}
    path.write_text(yaml.safe_dump(data))
    two = make_plan(load_study(path))
    assert all(j.config["threads"] == 1 for j in one.jobs) and all(j.config["threads"] == 2 for j in two.jobs)
    assert not {j.id for j in one.jobs} & {j.id for j in two.jobs}


@pytest.mark.slow
def test_cpu_results_depend_on_the_thread_count():
    """Why the thread count is part of a CPU job's identity: the same job at 1 and 2 threads differs bitwise."""
    assert F.compute("method:mae", threads=1) != F.compute("method:mae", threads=2)
