"""The SLURM executor without a cluster: profiles, parameter mapping, array chunking, sacct parsing (one
batched call), dry runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import results as R
from harness.cli import main
from harness.errors import ConfigError
from harness.launch import state as state_mod
from harness.launch.profiles import load_profile
from harness.launch.slurm import CODE_ROOT, chunks, slurm_parameters
from harness.launch.state import _array_task_ids, job_statuses, sacct_states
from harness.plan import Job
from harness.results import JobState
from harness.spec import Resources

REPO = Path(__file__).resolve().parents[1]
PAPER = Resources(nodes=2, gpus_per_node=8, tasks_per_node=8, cpus_per_task=10, mem_gb=480, timeout_min=4320)


def test_ci_profile_maps_resources_and_exports_code_and_cache():
    params = slurm_parameters(Resources(cpus_per_task=2, mem_gb=3, timeout_min=20), load_profile("ci"))
    assert {k: v for k, v in params.items() if k != "slurm_setup"} == {
        "timeout_min": 20, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 2, "mem_gb": 3, "slurm_partition": "debug"}
    setup = params["slurm_setup"]
    assert setup[0] == f"export PYTHONPATH={CODE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"
    assert f"export HARNESS_CACHE={Path(os.environ['HARNESS_CACHE']).resolve()}" in setup


def test_gpu_profile_maps_paper_resources(monkeypatch):
    monkeypatch.setenv("USER", "alice")
    prof = load_profile("example-gpu")
    assert prof.submitit_folder == "/checkpoint/alice/harness/submitit"  # ${USER} expanded
    params = slurm_parameters(PAPER, prof)
    assert params["gpus_per_node"] == 8 and params["tasks_per_node"] == 8 and params["nodes"] == 2
    assert params["cpus_per_task"] == 10  # cpus_per_gpu x gpus / tasks
    assert params["mem_gb"] == 480
    assert params["timeout_min"] == 4320
    assert (params["slurm_account"], params["slurm_qos"], params["slurm_constraint"]) == ("my-account", "normal", "volta32gb")
    assert params["slurm_array_parallelism"] == 64
    capped = slurm_parameters(PAPER.model_copy(update={"timeout_min": 99999, "mem_gb": 1000}), prof)
    assert capped["timeout_min"] == 4320 and capped["mem_gb"] == 480


def test_profile_setup_and_env_reach_the_job_script(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"name": "site", "partition": "p", "setup": ["module load cuda/12.1"],
                                    "env": {"HARNESS_DATA_IMAGENET": "/datasets/imagenet"}, "signal_delay_s": 300}))
    params = slurm_parameters(Resources(), load_profile(str(path)))
    assert params["slurm_setup"][0] == "module load cuda/12.1"
    assert "export HARNESS_DATA_IMAGENET=/datasets/imagenet" in params["slurm_setup"]
    assert params["slurm_signal_delay_s"] == 300


def test_too_many_gpus_for_the_cluster_is_an_error():
    with pytest.raises(ConfigError, match="16 GPUs per node"):
        slurm_parameters(PAPER.model_copy(update={"gpus_per_node": 16}), load_profile("example-gpu"))


def test_profile_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="did you mean 'ci'"):
        load_profile("cj")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\npartitoin: gpu\n")
    with pytest.raises(ConfigError, match="partitoin"):
        load_profile(str(bad))
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\npartition: big\nmax_array_size: 7\n")
    monkeypatch.setenv("HARNESS_CLUSTER", str(good))
    assert load_profile().max_array_size == 7


def test_chunks_respect_the_array_size_cap():
    assert chunks(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert chunks(list(range(3)), 1000) == [[0, 1, 2]]
    assert chunks([1, 2], 0) == [[1, 2]]


def test_array_rows_of_sacct_expand_to_tasks():
    assert _array_task_ids("12_[0-3,7%2]") == ["12_0", "12_1", "12_2", "12_3", "12_7"]
    assert _array_task_ids("12_[5]") == ["12_5"]
    assert _array_task_ids("12_3") == ["12_3"]
    assert _array_task_ids("12") == ["12"]


def _job(job_id: str, stage: str, upstream: str | None = None) -> Job:
    coords = {"method": "supervised", "pretrain_dataset": "d", "fraction": 1.0, "epochs": 1, "seed": 0,
              "task": None if stage == "pretrain" else "finetune", "task_dataset": None}
    return Job(job_id, stage, {}, coords, Resources(), upstream=upstream)


# what sacct 22.05 printed on the CI cluster (-X -n -P -o JobID,State,Reason) for these situations
SACCT_OUTPUT = "\n".join([
    "5_0|FAILED|None",                 # a pre-training array task that failed without writing failed.json
    "5_1|RUNNING|None",
    "6|CANCELLED|Dependency",          # killed by SLURM: its afterok dependency can never be met
    "7|CANCELLED by 0|Dependency",     # cancelled by a user while waiting: not a dependency failure
    "8_[0-1]|CANCELLED|Dependency",    # an array that never started, one bracketed row
    "9|COMPLETED|Dependency",          # finished after waiting on its dependency
    "10|CANCELLED|None",               # sacct lagging behind: the controller has it queued again (below)
    "12|CANCELLED|None",               # the scheduler's cancel seen before its reason; its upstream failed
]) + "\n"
SQUEUE_OUTPUT = "5_1|RUNNING\n10|PENDING\n11|RUNNING\n"


def test_job_statuses_use_one_sacct_call_and_recognise_dependency_kills(tmp_path, monkeypatch):
    jobs = [_job("pa", "pretrain"), _job("pb", "pretrain"), _job("da", "downstream", "pa"),
            _job("db", "downstream", "pb"), _job("dc", "downstream", "pa"), _job("dd", "downstream", "pa"),
            _job("de", "downstream", "pb"), _job("pq", "pretrain"), _job("df", "downstream", "pa")]
    ids = {"pa": "5_0", "pb": "5_1", "da": "6", "db": "7", "dc": "8_0", "dd": "8_1", "de": "9", "pq": "10",
           "df": "12"}
    for job_id, slurm_id in ids.items():
        R.atomic_write_json(tmp_path / job_id / R.SUBMITTED,
                            {"executor": "slurm", "slurm_id": slurm_id, "stderr": f"/logs/{slurm_id}.err"})
    R.atomic_write_json(tmp_path / "de" / R.METRICS, {"metrics": []})
    R.atomic_write_json(tmp_path / "pr" / R.SUBMITTED, {"executor": "slurm", "slurm_id": "11"})
    R.atomic_write_json(tmp_path / "pr" / R.FAILED, {"error": "CalledProcessError: scontrol requeue ..."})
    jobs.append(_job("pr", "pretrain"))  # an attempt failed while being preempted, and SLURM requeued it
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, SACCT_OUTPUT if cmd[0] == "sacct" else SQUEUE_OUTPUT, "")

    monkeypatch.setattr(state_mod.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(state_mod.subprocess, "run", fake_run)
    st = job_statuses(jobs, tmp_path)
    assert [c[0] for c in calls] == ["sacct", "squeue"]  # one of each, whatever the number of jobs
    assert calls[0][-1] == "10,12,5,6,7,8"  # array tasks queried through their array
    assert st["pa"].state == JobState.FAILED and st["pa"].log == "/logs/5_0.err"
    assert st["pb"].state == JobState.RUNNING
    assert st["da"].state == JobState.DEPENDENCY_FAILED and st["da"].log == "/logs/5_0.err"  # the upstream's log
    assert st["db"].state == JobState.FAILED and "CANCELLED by 0" in st["db"].detail
    assert st["dc"].state == st["dd"].state == st["df"].state == JobState.DEPENDENCY_FAILED
    assert st["de"].state == JobState.DONE
    assert st["pq"].state == JobState.RUNNING and "PENDING" in st["pq"].detail
    assert st["pr"].state == JobState.RUNNING


def test_sacct_unavailable_leaves_jobs_submitted(tmp_path, monkeypatch):
    monkeypatch.setattr(state_mod.shutil, "which", lambda name: None)
    assert sacct_states(["1"]) == {}
    R.atomic_write_json(tmp_path / "pa" / R.SUBMITTED, {"executor": "slurm", "slurm_id": "1"})
    assert job_statuses([_job("pa", "pretrain")], tmp_path)["pa"].state == JobState.RUNNING


def test_results_root_comes_from_the_cluster_profile(tmp_path, monkeypatch):
    from harness.cli import _results_root, build_parser

    prof = tmp_path / "site.yaml"
    prof.write_text(f"name: site\nresults_root: {tmp_path}/shared/results\n")
    args = build_parser().parse_args(["status", "imagenet-fractions", "--cluster", str(prof)])
    assert _results_root(args) == Path(os.environ["HARNESS_RESULTS"])  # the environment wins over the profile
    monkeypatch.delenv("HARNESS_RESULTS")
    assert _results_root(args) == tmp_path / "shared" / "results"


MICRO = {"name": "micro-dry", "default_scale": "tiny", "scales": {"tiny": {
    "model": "vit-tiny-32", "device": "cpu",
    "pretrain": {"methods": ["supervised"], "datasets": ["synthetic-objects"], "fractions": [0.1, 0.2],
                 "epochs": [1], "schedule": "fixed-epochs"},
    "downstream": [{"task": "finetune", "dataset": "synthetic-objects", "params": {"epochs": 1}}],
    "resources": {"pretrain": {"cpus_per_task": 2, "mem_gb": 3, "timeout_min": 15},
                  "downstream": {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 12}}}}}


def test_dry_run_prints_every_submission_and_submits_nothing(tmp_path, capsys, monkeypatch):
    study = tmp_path / "micro.yaml"
    study.write_text(yaml.safe_dump(MICRO))
    prof = tmp_path / "small.yaml"
    prof.write_text("name: small\npartition: debug\nmax_array_size: 1\n")
    monkeypatch.setattr(subprocess, "Popen", None)  # no sbatch (or any other process) may run
    assert main(["run", str(study), "--executor", "slurm", "--dry-run", "--cluster", str(prof)]) == 0
    out = capsys.readouterr().out
    assert "4 to submit" in out
    records = json.loads("[" + out.split("\n", 1)[1].replace("}\n{", "},\n{") + "]")
    pre = [r for r in records if r["stage"] == "pretrain"]
    down = [r for r in records if r["stage"] == "downstream"]
    assert len(pre) == 2 and all(len(r["jobs"]) == 1 for r in pre)  # max_array_size 1: one array per job
    assert pre[0]["parameters"]["cpus_per_task"] == 2 and pre[0]["parameters"]["timeout_min"] == 15
    assert len(down) == 2
    for r in down:
        upstream = r["jobs"][0].split("-", 1)[1].rsplit("-", 1)[0]
        assert r["dependency"].startswith("afterok:<slurm id of pre-") and upstream in r["dependency"]
        assert r["parameters"]["slurm_additional_parameters"] == {"dependency": r["dependency"], "kill-on-invalid-dep": "yes"}
        assert r["parameters"]["mem_gb"] == 2
    results = Path(os.environ["HARNESS_RESULTS"]) / "micro-dry"
    assert not results.exists()  # nothing written


def test_downstream_of_a_queued_pretraining_job_depends_on_its_slurm_id(tmp_path):
    from harness.job import JobSpec
    from harness.launch.slurm import submit_slurm

    def spec(job_id, upstream):
        return JobSpec(job_id=job_id, stage="downstream", config={}, coords={}, study="s", scale="tiny",
                       study_dir=str(tmp_path), upstream=upstream)

    records = submit_slurm([], [spec("da", "pa"), spec("db", "pa"), spec("dc", "pdone")],
                           {"pretrain": Resources(), "downstream": Resources()}, load_profile("ci"),
                           {"pa": "12_3"}, tmp_path / "submitit", dry_run=True)
    assert [(r["jobs"], r["dependency"]) for r in records] == [(["da", "db"], "afterok:12_3"), (["dc"], None)]
    assert records[1]["parameters"]["slurm_additional_parameters"] == {}  # no dependency left over from the first
