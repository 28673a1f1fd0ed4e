"""Jobs that span two SLURM nodes (``make slurm-up NODES=2``; ``.ci/run`` starts two): submitit's multi-node launch
and torch.distributed's rendezvous across nodes (gloo), compared with one process at the same global batch,
and a two-node job preempted mid-training that resumes from the checkpoint written on the preemption signal.

The loaders use a worker, so every item's augmentation is seeded from its place in the run and the two ranks
see exactly the augmented images one process sees; supervised pre-training and fine-tuning draw no other
random numbers at this scale, so the results agree to float rounding.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import submitit
import torch
import yaml

from harness import results as R
from harness.launch import launch
from harness.plan import make_plan
from harness.results import JobState
from harness.spec import load_study
from tests.test_slurm_cluster import wait_final, write_study


def _idle_nodes() -> int:
    if shutil.which("sinfo") is None:
        return 0
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len({line.split()[0] for line in out.stdout.splitlines() if line.split()[1:] and
                line.split()[1].rstrip("*") in ("idle", "mixed")})


NODES = _idle_nodes()
REQUIRED = os.environ.get("HARNESS_REQUIRE_SLURM") == "1"

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(NODES < 2 and not REQUIRED, reason="needs a SLURM cluster with two idle nodes "
                                                          "(`make slurm-up NODES=2`)"),
]

TWO_NODES = {"nodes": 2, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": 2, "timeout_min": 15}


@pytest.fixture(autouse=True)
def _two_nodes_required():
    if NODES < 2:
        pytest.fail("HARNESS_REQUIRE_SLURM=1 but the SLURM cluster has fewer than two idle nodes "
                    "(`make slurm-up NODES=2`)")


def _study(folder: Path, name: str, epochs: int, downstream: bool = True) -> Path:
    """A tiny study whose loaders use a worker: a scale of its own name, so that the method and task defaults
    are the paper's (which name ``num_workers``), brought down to the tiny model and data, without mixup and
    cutmix (they draw in the main process, whose RNG differs by rank) and without RandAugment."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_study(folder / f"{name}.yaml", name, epochs=(epochs,), downstream=downstream,
                       method_params={"drop_path": 0.0, "warmup_epochs": 1, "num_workers": 1, "mixup": 0.0,
                                      "cutmix": 0.0, "auto_augment": ""},
                       downstream_params={"batch_size": 32, "drop_path": 0.0, "warmup_epochs": 1, "mixup": 0.0,
                                          "cutmix": 0.0, "num_workers": 1},
                       resources={"pretrain": TWO_NODES, "downstream": TWO_NODES})
    data = yaml.safe_load(path.read_text())
    data["scales"] = {"workers": data["scales"]["tiny"]}
    data["default_scale"] = "workers"
    path.write_text(yaml.safe_dump(data))
    return path


def _history(job_dir: Path) -> list[float]:
    return [row["loss"] for row in torch.load(job_dir / R.CHECKPOINT, weights_only=False)["history"]]


def _encoder(job_dir: Path) -> dict:
    return torch.load(job_dir / R.ENCODER, weights_only=True)["state_dict"]


def _assert_close_states(a: dict, b: dict, job) -> None:
    """Equal to 1e-5, but for the attention's key bias: softmax ignores it, so its gradient is zero up to float
    rounding, which Adam (dividing by the gradient's running size) turns into steps of up to about lr; the key
    bias only has to stay within that bound, lr per update, of its reference."""
    key_atol = job.config["params"]["lr"] * job.config["schedule"]["total_updates"]
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("attn.qkv.bias"):
            q, key, v = x.chunk(3)
            q_ref, key_ref, v_ref = y.chunk(3)
            torch.testing.assert_close(key, key_ref, rtol=0, atol=key_atol, msg=lambda m: f"{k} (key part): {m}")
            x, y = torch.cat([q, v]), torch.cat([q_ref, v_ref])
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5, msg=lambda m: f"{k}: {m}")


@pytest.fixture(scope="module")
def two_node_and_single_runs(tmp_path_factory):
    """One study (pre-training + fine-tuning) run by SLURM on two nodes, and in one local process."""
    folder = tmp_path_factory.mktemp("multi")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_PROGRESS", "0")
    try:
        plan = make_plan(load_study(_study(folder, "multi-node", epochs=2)))
        t0 = time.time()
        records = launch(plan, executor="slurm", results_root=folder / "two", profile="ci").slurm_records
        launch(plan, executor="debug", results_root=folder / "one")
        statuses = wait_final(plan, folder / "two" / "multi-node", timeout_s=600)
        print(f"\n[timing] two-node pre-training + fine-tuning {time.time() - t0:.1f} s")
    finally:
        mp.undo()
    assert {s.state for s in statuses.values()} == {JobState.DONE}, statuses
    return plan, records, folder / "two" / "multi-node", folder / "one" / "multi-node"


def _ran_on_two_nodes(records: list[dict], stage: str) -> None:
    rec = next(r for r in records if r["stage"] == stage)
    assert (rec["parameters"]["nodes"], rec["parameters"]["tasks_per_node"]) == (2, 1)
    tasks = submitit.SlurmJob(folder=rec["folder"], job_id=rec["slurm_ids"][0], tasks=(0, 1))
    nodes = subprocess.run(["sacct", "-n", "-X", "-j", tasks.job_id, "-o", "NNodes"], capture_output=True,
                           text=True).stdout.split()
    assert nodes and int(nodes[0]) == 2, nodes


def test_pretraining_multi_node_matches_one_process(two_node_and_single_runs):
    plan, records, two, one = two_node_and_single_runs
    pre = plan.pretrain[0]
    _ran_on_two_nodes(records, "pretrain")
    assert R.read_json(two / pre.id / R.ENV)["world_size"] == 2
    assert R.read_json(one / pre.id / R.ENV)["world_size"] == 1
    _assert_close_states(_encoder(two / pre.id), _encoder(one / pre.id), pre)
    torch.testing.assert_close(_history(two / pre.id), _history(one / pre.id), rtol=1e-5, atol=1e-6)


def test_finetuning_multi_node_matches_one_process(two_node_and_single_runs):
    plan, records, two, one = two_node_and_single_runs
    down = plan.downstream[0]
    _ran_on_two_nodes(records, "downstream")
    assert R.read_json(two / down.id / R.ENV)["world_size"] == 2
    torch.testing.assert_close(_history(two / down.id), _history(one / down.id), rtol=1e-5, atol=1e-6)
    metrics_two = {m["name"]: m["value"] for m in R.read_json(two / down.id / R.METRICS)["metrics"]}
    metrics_one = {m["name"]: m["value"] for m in R.read_json(one / down.id / R.METRICS)["metrics"]}
    assert metrics_two.keys() == metrics_one.keys()
    for name, value in metrics_one.items():
        assert metrics_two[name] == pytest.approx(value, rel=1e-4, abs=1e-4), name


def test_preempted_multi_node_job_resumes_from_its_checkpoint(tmp_path):
    # no checkpoint on an interval: the one it resumes from is written on the preemption signal
    plan = make_plan(load_study(_study(tmp_path, "multi-node-preempt", epochs=12, downstream=False)))
    job = plan.pretrain[0]
    interrupted = launch(plan, executor="slurm", results_root=tmp_path / "two", profile="ci").slurm_records[0]
    job_dir = tmp_path / "two" / "multi-node-preempt" / job.id
    end = time.time() + 300
    while not ((job_dir / R.LOG).exists() and "epoch 1:" in (job_dir / R.LOG).read_text()):
        assert not (job_dir / R.METRICS).exists(), "the job finished before it could be interrupted"
        assert time.time() < end, "the job did not finish its first epoch"
        time.sleep(0.3)
    slurm_job = submitit.SlurmJob(folder=interrupted["folder"], job_id=interrupted["slurm_ids"][0])
    slurm_job._interrupt()  # preemption: SIGTERM, then USR2 to every task -> checkpoint -> requeue
    launch(plan, executor="debug", results_root=tmp_path / "one")  # the reference: one process, never stopped
    final = wait_final(plan, tmp_path / "two" / "multi-node-preempt", timeout_s=600)[job.id]
    log = (job_dir / R.LOG).read_text()
    assert final.state == JobState.DONE and log.count(f"job {job.id} starts") == 2, (final, log)
    saved_at = int(re.search(r"preemption signal: checkpoint written at update (\d+)", log).group(1))
    resumed_at = int(re.search(r"resumed from .* at update (\d+)", log).group(1))
    assert 0 < saved_at == resumed_at < job.config["schedule"]["total_updates"]
    assert f"Requeued job {slurm_job.job_id}" in slurm_job.paths.stderr.read_text() + slurm_job.paths.stdout.read_text()
    assert R.read_json(job_dir / R.ENV)["world_size"] == 2
    _assert_close_states(_encoder(job_dir), _encoder(tmp_path / "one" / "multi-node-preempt" / job.id), job)
