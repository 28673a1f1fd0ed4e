"""Orchestration at scale: the time of every everyday command on 1k, 10k and 50k jobs (a script, not a test).

    PYTHONPATH=. python benchmarks/orchestration_bench.py [--sizes 1000 10000 50000] [--workdir DIR] [--repeat 1]

Everything lives in a scratch folder (``--workdir``, default a temporary one): its own cache, results root and
study file, so the script runs from a fresh clone. For each size it writes a study whose tiny scale plans about
that many jobs (5 methods x 10 fractions x 4 epochs x seeds, plus random init, each with 2 downstream tasks),
launches nothing, but writes the plan.json a launch writes and a folder per job holding the files a real job
writes (spec.json, env.json, log.txt, submitted.json and metrics.json or failed.json): 80% done, 10% queued in
SLURM, 5% failed in SLURM, 5% never submitted. ``sacct`` and ``squeue`` are fake scripts put first on PATH that
answer from the submitted arrays. Timed, each as a whole command in a fresh process: ``harness --help``,
``harness plan`` (10k jobs, tiny scale and paper scale with the data indexes cached; ImageNet-sized indexes
are written straight into the cache, so no image is needed), ``status``, ``collect`` and ``report``. Prints
the goals and whether they are met.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
METHODS = ["supervised", "beit", "splitmask", "dino", "mae"]
FRACTIONS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.4, 0.5, 0.75, 1.0]
EPOCHS = [1, 2, 3, 4]
ARRAY_SIZE = 1000
GOALS = {"help": 0.5, "plan": 1.0, "status": 5.0, "collect": 5.0, "report": 5.0}
GROWTH_GOAL = 5.5

FAKE_SACCT = """#!{python}
import json, os, sys
arrays = json.load(open(os.environ["FAKE_SLURM_DB"]))
ids = sys.argv[sys.argv.index("-j") + 1].split(",")
out = []
for i in ids:
    if i in arrays:
        state, last = arrays[i]
        out.append(f"{{i}}_[0-{{last}}]|{{state}}|{{'Priority' if state == 'PENDING' else 'None'}}")
print("\\n".join(out))
"""
FAKE_SQUEUE = "#!/bin/sh\nexit 0\n"


def seeds_for(size: int) -> int:
    per_seed = 3 * (len(METHODS) * len(FRACTIONS) * len(EPOCHS) + 1)  # each pre-training job + 2 downstream
    return max(1, round(size / per_seed))


def study_yaml(name: str, seeds: int) -> str:
    grid = {"methods": ["none", *METHODS], "fractions": FRACTIONS, "epochs": EPOCHS, "seeds": list(range(seeds))}
    tiny = {"model": "vit-tiny-32", "device": "cpu",
            "pretrain": {**grid, "datasets": ["synthetic-objects"]},
            "downstream": [{"task": "finetune", "dataset": "synthetic-objects"},
                           {"task": "knn", "dataset": "synthetic-objects"}]}
    paper = {"model": "vit-b16", "device": "cuda",
             "pretrain": {**grid, "datasets": ["imagenet"]},
             "downstream": [{"task": "finetune", "dataset": "imagenet"}, {"task": "finetune", "dataset": "inat2019"}],
             "resources": {"pretrain": {"gpus_per_node": 8, "nodes": 2, "tasks_per_node": 8},
                           "downstream": {"gpus_per_node": 8, "nodes": 2, "tasks_per_node": 8}}}
    doc = {"name": name, "description": "orchestration benchmark", "default_scale": "tiny",
           "common": {"pretrain": {"schedule": "fixed-updates", "subset_seed": 0}},
           "scales": {"tiny": tiny, "paper": paper}}
    return json.dumps(doc, indent=1)  # JSON is YAML


def cache_paper_indexes(data_dir: Path) -> dict[str, str]:
    """Empty roots for imagenet and inat2019 with ImageNet-sized indexes written into the cache."""
    from harness.data.index import Index, cache_path

    sizes = {("imagenet", "train"): (1_281_167, 1000), ("imagenet", "val"): (50_000, 1000),
             ("inat2019", "train"): (265_213, 1010), ("inat2019", "val"): (3_030, 1010)}
    env = {}
    for (name, split), (n, classes) in sizes.items():
        root = data_dir / name
        root.mkdir(parents=True, exist_ok=True)
        env[f"HARNESS_DATA_{name.upper()}"] = str(root)
        path = cache_path(name, split, root)
        if not path.exists():
            labels = np.sort(np.random.default_rng(0).integers(0, classes, n))
            items = [f"{split}/c{c:04d}/img_{i}.jpg" for i, c in enumerate(labels)]
            Index(name, split, root, items, labels, [f"c{c:04d}" for c in range(classes)]).save(path)
    return env


def write_jobs(plan, study_dir: Path, db_path: Path) -> None:
    """A folder per planned job with the files a real job writes; SLURM arrays recorded for the fake sacct."""
    from harness import results as R
    from harness.environment import environment, provenance
    from harness.job import JobSpec
    from harness.launch import job_spec
    from harness.plan import save_plan

    def write_json(path: Path, data) -> None:  # what R.atomic_write_json writes, without its fsync per file
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    rng = random.Random(0)
    env = environment()
    save_plan(plan, study_dir)
    arrays: dict[str, list] = {}
    next_array = [1000]

    def slurm_id(state: str) -> str:
        key = str(next_array[0])
        last = arrays.setdefault(key, [state, -1])
        last[1] += 1
        if last[1] == ARRAY_SIZE - 1:
            next_array[0] += 1
        return f"{key}_{last[1]}"

    for job in plan.jobs:
        spec: JobSpec = job_spec(job, plan, study_dir)
        d = spec.job_dir
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / R.SPEC, asdict(spec))
        write_json(d / R.ENV, {**env, "world_size": 1})
        (d / R.LOG).write_text(f"job {job.id} starts ({job.stage})\n")
        roll = rng.random()
        if roll < 0.05:
            continue  # never submitted
        if roll < 0.15:
            state = "PENDING" if roll < 0.10 else "FAILED"
            sid = slurm_id(state)
            write_json(d / R.SUBMITTED, {"executor": "slurm", "slurm_id": sid, "submitted_at": time.time(),
                                                  "stdout": str(d / "out"), "stderr": str(d / "err")})
            if state == "FAILED":
                write_json(d / R.FAILED, {"error": "RuntimeError: out of memory", "log": str(d / R.LOG)})
            continue
        write_json(d / R.SUBMITTED, {"executor": "local", "pid": 1, "submitted_at": time.time()})
        if job.stage == "pretrain":
            rows = [{"name": "pretrain_loss", "value": rng.uniform(1, 5), "split": "train"}]
        else:
            top1 = rng.uniform(20, 90)
            rows = [{"name": "top1", "value": top1, "split": "val"}, {"name": "top5", "value": min(100, top1 + 10),
                                                                      "split": "val"}]
            rows += [{"name": "train_loss", "value": rng.uniform(0.5, 3), "split": "train"}] if job.config[
                "task"] == "finetune" else []
        write_json(d / R.METRICS, {
            "job_id": job.id, "study": spec.study, "scale": spec.scale, "stage": job.stage, "upstream": job.upstream,
            **job.coords, "metrics": rows, "updates": job.updates or 0, "wall_time_s": round(rng.uniform(10, 99), 2),
            "finished_at": "2026-01-01T00:00:00", "provenance": provenance(env)})
    db_path.write_text(json.dumps({k: v for k, v in arrays.items()}))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of the command; CPU time (user + system) is what a busy machine does not
    inflate, wall time is what a user waits on a quiet one."""
    times = []
    for _ in range(repeat):
        t, cpu = time.perf_counter(), _children_cpu()
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        times.append((time.perf_counter() - t, _children_cpu() - cpu))
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return statistics.median(w for w, _ in times), statistics.median(c for _, c in times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per timing (median)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="orchestration-bench-")).resolve()
    bin_dir, data_dir = work / "bin", work / "data"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "sacct").write_text(FAKE_SACCT.format(python=sys.executable))
    (bin_dir / "squeue").write_text(FAKE_SQUEUE)
    for f in ("sacct", "squeue"):
        (bin_dir / f).chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_CACHE": str(work / "cache"), "HARNESS_PROGRESS": "0",
           "HARNESS_RESULTS": str(work / "results"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    env.pop("HARNESS_DATA_ROOTS", None)
    os.environ.update(env)
    env.update(cache_paper_indexes(data_dir))
    os.environ.update(env)

    from harness.plan import make_plan
    from harness.spec import load_study

    harness = [sys.executable, "-m", "harness.cli"]
    rows: dict[int, dict[str, float]] = {}
    print(f"workdir {work}")
    help_s = timed([*harness, "--help"], env, max(3, args.repeat))
    print(f"--help: {help_s[0]:.2f} s (CPU {help_s[1]:.2f} s)")
    for size in args.sizes:
        name = f"bench-{size}"
        study_file = work / f"{name}.yaml"
        study_file.write_text(study_yaml(name, seeds_for(size)))
        study_dir = work / "results" / name
        plan = make_plan(load_study(study_file, "tiny"))
        if not (study_dir / "plan.json").exists():
            t = time.perf_counter()
            write_jobs(plan, study_dir, work / f"{name}-slurm.json")
            print(f"{name}: wrote {len(plan.jobs)} job folders in {time.perf_counter() - t:.0f} s")
        env["FAKE_SLURM_DB"] = str(work / f"{name}-slurm.json")
        times = {}
        if size == 10_000 or size == args.sizes[0] and len(args.sizes) == 1:
            for scale in ("tiny", "paper"):
                timed([*harness, "plan", str(study_file), "--scale", scale], env, 1)  # warm the index caches
                times[f"plan {scale}"] = timed([*harness, "plan", str(study_file), "--scale", scale], env, args.repeat)
        times["status"] = timed([*harness, "status", str(study_file)], env, args.repeat)
        times["collect"] = timed([*harness, "collect", str(study_file)], env, args.repeat)
        times["report"] = timed([*harness, "report", str(study_file)], env, args.repeat)
        rows[size] = times
        print(f"{name} ({len(plan.jobs)} jobs): " + ", ".join(f"{k} {w:.2f} s (CPU {c:.2f} s)"
                                                           for k, (w, c) in times.items()), flush=True)
    report(help_s, rows)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def report(help_s: tuple[float, float], rows: dict[int, dict[str, tuple[float, float]]]) -> None:
    """The goals with the wall and CPU time of each; on a busy machine judge by CPU time."""
    print(f"\n{'goal':<38} {'wall':>8} {'CPU':>8} {'goal':>7}  met (wall, CPU)")

    def line(what: str, measured: tuple[float, float], goal: float, unit: str = "s") -> None:
        wall, cpu = measured
        print(f"{what:<38} {wall:7.2f}{unit} {cpu:7.2f}{unit} {goal:6.1f}{unit}  {wall <= goal}, {cpu <= goal}")

    line("--help", help_s, GOALS["help"])
    for size, times in rows.items():
        for what, t in times.items():
            if what.startswith("plan") or size == max(rows):
                line(f"{what} ({size} jobs)", t, GOALS[what.split()[0]])
    sizes = sorted(rows)
    if len(sizes) >= 2:
        small, big = sizes[-2], sizes[-1]
        for what in ("status", "collect", "report"):
            ratio = tuple(rows[big][what][i] / rows[small][what][i] for i in (0, 1))
            line(f"growth {what} {small} -> {big}", ratio, GROWTH_GOAL, "x")


if __name__ == "__main__":
    main()
