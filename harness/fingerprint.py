"""Behaviour fingerprints: what keeps a stored result true.

A job's identity hashes its configuration and the ``version`` of its method or task, so a result is reused
only while the code that produced it behaves the same. The fingerprint of a method (or task) is a hash of what
a few updates of it produce at the smallest size from a fixed seed, run through the harness's own plan and job
runner: the exported encoder's weights for a method; the metrics and trained weights for a task (on top of a
random-init encoder, so that a task's fingerprint does not move with any method). ``tests/fingerprints.json``
stores them with the version they were taken at; ``tests/test_fingerprints.py`` fails when an output changes
while the version stays, naming the version to bump.

Refresh the stored fingerprints (after bumping the version) with::

    .venv/bin/python -m harness.fingerprint --write           # every method and task
    .venv/bin/python -m harness.fingerprint --write method:mae  # one of them
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

STORE = Path(__file__).resolve().parents[1] / "tests" / "fingerprints.json"
REFRESH = ".venv/bin/python -m harness.fingerprint --write"
MODEL = "vit-tiny-16"
DATASET = "synthetic-objects"
# a few updates per job: 5 % of synthetic-objects is 100 images, one update per epoch at batch 64
PRETRAIN = {"fractions": [0.05], "epochs": [3], "schedule": "fixed-epochs", "seeds": [0], "subset_seed": 0}
# each task on its own tiny data with a schedule cut to a few updates
TASK_RUNS: dict[str, dict[str, Any]] = {
    "finetune": {"dataset": DATASET, "params": {"epochs": 1}},
    "linear_probe": {"dataset": DATASET, "params": {"epochs": 2}},
    "knn": {"dataset": DATASET, "params": {}},
    "detection": {"dataset": "synthetic-scenes", "params": {"epochs": 1}},
    "segmentation": {"dataset": "synthetic-segmentation", "params": {"epochs": None, "updates": 3}},
}


def subjects() -> list[str]:
    """Every registered method and task, as ``method:<name>`` / ``task:<name>``."""
    from harness.methods import METHODS
    from harness.tasks import TASKS

    return [f"method:{m}" for m in METHODS.names()] + [f"task:{t}" for t in TASKS.names()]


def version_of(subject: str) -> int:
    from harness.methods import METHODS
    from harness.tasks import TASKS

    kind, name = subject.split(":")
    return (METHODS if kind == "method" else TASKS).get(name).version


def source_of(subject: str) -> str:
    import inspect

    from harness.methods import METHODS
    from harness.tasks import TASKS

    kind, name = subject.split(":")
    cls = (METHODS if kind == "method" else TASKS).get(name)
    return f"{Path(inspect.getfile(cls)).name} ({cls.__name__}.version)"


def _study_file(folder: Path, subject: str, threads: int) -> Path:
    kind, name = subject.split(":")
    method = name if kind == "method" else "none"
    cpus = {"cpus_per_task": threads}
    scale: dict[str, Any] = {"model": MODEL, "device": "cpu", "resources": {"pretrain": cpus, "downstream": cpus},
                             "pretrain": {"methods": [method], "datasets": [DATASET], **PRETRAIN}}
    if kind == "task":
        run = TASK_RUNS[name]
        scale["downstream"] = [{"task": name, "dataset": run["dataset"], "params": run["params"]}]
    path = folder / "fingerprint.yaml"
    path.write_text(yaml.safe_dump({"name": "fingerprint", "scales": {"tiny": scale}}, sort_keys=False))
    return path


def _hash_tensors(digest, state: dict) -> None:
    import torch

    for key in sorted(state):
        value = state[key]
        if isinstance(value, torch.Tensor):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())


def _job_digest(job_dir: Path, stage: str) -> str:
    import torch

    from harness import results as R

    digest = hashlib.sha256()
    if stage == "pretrain":
        _hash_tensors(digest, torch.load(job_dir / R.ENCODER, map_location="cpu", weights_only=True)["state_dict"])
    else:
        rows = json.loads((job_dir / R.METRICS).read_text())["metrics"]
        digest.update(json.dumps(sorted((r["name"], r["split"], r["value"]) for r in rows)).encode())
        if (job_dir / R.CHECKPOINT).exists():
            _hash_tensors(digest, torch.load(job_dir / R.CHECKPOINT, map_location="cpu", weights_only=False)["model"])
    return digest.hexdigest()[:16]


def compute(subject: str, threads: int = 1) -> str:
    """Run the subject's few updates in a scratch folder, in-process, with ``threads`` torch threads."""
    import torch

    from harness.job import run_job
    from harness.launch import job_spec
    from harness.plan import make_plan
    from harness.spec import load_study

    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="fingerprint-") as tmp:
        folder = Path(tmp)
        plan = make_plan(load_study(_study_file(folder, subject, threads)))
        try:
            for job in plan.pretrain + plan.downstream:  # each job sets its own thread count (harness.job)
                run_job(job_spec(job, plan, folder / "results"))
        finally:
            torch.set_num_threads(before)
        last = plan.downstream[-1] if plan.downstream else plan.pretrain[-1]
        return _job_digest(folder / "results" / last.id, last.stage)


def torch_version() -> str:
    import torch

    return torch.__version__


def load_store() -> dict[str, Any]:
    return json.loads(STORE.read_text()) if STORE.exists() else {"torch": torch_version(), "fingerprints": {}}


def check(subject: str, store: dict[str, Any]) -> str | None:
    """None when the subject's output matches its stored fingerprint; else what to do about it."""
    stored = store["fingerprints"].get(subject)
    version = version_of(subject)
    if stored is None:
        return f"{subject} has no stored fingerprint: run `{REFRESH} {subject}`"
    if stored["version"] != version:
        return (f"{subject} is at version {version} but its stored fingerprint was taken at version "
                f"{stored['version']}: run `{REFRESH} {subject}`")
    now = compute(subject)
    if now != stored["hash"]:
        return (f"{subject}: its output changed ({stored['hash']} -> {now}) but its version did not; results stored "
                f"under the old behaviour would be reused as if still true. Bump the version in {source_of(subject)}"
                f" from {version} to {version + 1}, then run `{REFRESH} {subject}` (if the change is not meant to "
                f"alter results, find out why it does)")
    return None


def write(selected: list[str]) -> dict[str, Any]:
    store = load_store()
    if store.get("torch") != torch_version():
        store = {"torch": torch_version(), "fingerprints": {}}  # hashes are exact: one torch build only
        selected = subjects()
    for subject in selected:
        store["fingerprints"][subject] = {"version": version_of(subject), "hash": compute(subject)}
        print(f"{subject}: version {store['fingerprints'][subject]['version']}, {store['fingerprints'][subject]['hash']}")
    store["fingerprints"] = dict(sorted(store["fingerprints"].items()))
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in store["fingerprints"].items())
    STORE.write_text('{"torch": %s,\n "fingerprints": {\n%s\n }\n}\n' % (json.dumps(store["torch"]), lines))
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.fingerprint", description=__doc__.split("\n\n")[0])
    parser.add_argument("subjects", nargs="*", help="method:<name> / task:<name> (default: all)")
    parser.add_argument("--write", action="store_true", help=f"store the fingerprints in {STORE.name}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the stored ones are for 1)")
    args = parser.parse_args(argv)
    selected = args.subjects or subjects()
    if args.write:
        write(selected)
        return 0
    for subject in selected:
        print(f"{subject}: {compute(subject, args.threads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
