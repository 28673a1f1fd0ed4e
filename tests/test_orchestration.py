"""Orchestration at scale: commands that import only what they use, the launched plan.json read by status and
collect (without the data), schedules known at plan time for every stage, sacct in chunks with failures
reported, and tables formatted in one pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import results as R
from harness.cli import main
from harness.estimate import job_flops
from harness.launch import state as state_mod
from harness.launch.state import SlurmQueryError, id_chunks, job_statuses, sacct_states
from harness.plan import PLAN_FILE, Job, load_plan, make_plan, save_plan
from harness.schedule import downstream_schedule
from harness.spec import Resources, load_study
from tests.micro import write_micro

REPO = Path(__file__).resolve().parents[1]


def _run_without_torch(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``harness ARGS`` in a fresh interpreter; it fails if torch (or timm) got imported."""
    code = ("import sys\nfrom harness.cli import main\ntry:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    rc = e.code\nheavy = [m for m in ('torch', 'timm', 'torchvision') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc if not heavy else 99)\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


def _fake_results(plan, study_dir: Path) -> None:
    """Job folders as finished jobs leave them (no job runs)."""
    from dataclasses import asdict

    from harness.launch import job_spec

    save_plan(plan, study_dir)
    for job in plan.jobs:
        spec = job_spec(job, plan, study_dir)
        R.atomic_write_json(spec.job_dir / R.SPEC, asdict(spec))
        rows = [{"name": "top1", "value": 50.0 + job.coords["seed"], "split": "val"}] if job.stage == "downstream" else []
        R.atomic_write_json(spec.job_dir / R.METRICS, {"job_id": job.id, "study": spec.study, "scale": spec.scale,
                                                      "stage": job.stage, "upstream": job.upstream, **job.coords,
                                                      "metrics": rows, "updates": job.updates or 0, "wall_time_s": 1})


def test_everyday_commands_import_no_torch(tmp_path):
    study = write_micro(tmp_path)
    plan = make_plan(load_study(study))  # in this process: also writes the declarations snapshot to the cache
    from harness.declarations import _load

    _load()
    study_dir = Path(os.environ["HARNESS_RESULTS"]) / "micro"
    _fake_results(plan, study_dir)
    assert _run_without_torch(["--help"]).returncode == 0
    bad = _run_without_torch(["status"])  # an argument error
    assert bad.returncode == 2 and "HEAVY []" in bad.stderr
    for args in (["plan", str(study)], ["status", str(study)], ["collect", str(study)],
                 ["report", str(study), "--only", "tables"]):
        out = _run_without_torch(args)
        assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    planned = _run_without_torch(["plan", str(study)]).stdout
    assert all(j.id in planned for j in plan.jobs)  # the torch-free plan has the very same job identities


def _imagefolder(root: Path, classes=2, per_class=4) -> Path:
    from PIL import Image

    for split in ("train", "test"):  # stanford-cars' validation split is its test folder
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * c, 10 * i, 0)).save(folder / f"{i}.png")
    return root


def test_status_and_collect_read_the_launched_plan_without_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DATA_STANFORD_CARS", str(_imagefolder(tmp_path / "cars")))
    study = write_micro(tmp_path, datasets=["stanford-cars"], fractions=[0.5])
    data = yaml.safe_load(study.read_text())
    data["scales"]["tiny"]["downstream"][0]["dataset"] = "stanford-cars"
    study.write_text(yaml.safe_dump(data))
    plan = make_plan(load_study(study))
    study_dir = Path(os.environ["HARNESS_RESULTS"]) / "micro"
    _fake_results(plan, study_dir)
    monkeypatch.delenv("HARNESS_DATA_STANFORD_CARS")  # e.g. results copied to a laptop
    from harness.errors import DataRootError

    with pytest.raises(DataRootError):
        make_plan(load_study(study))
    assert main(["status", str(study)]) == 0
    out = capsys.readouterr().out
    assert f"total: done {len(plan.jobs)}" in out and all(j.id in out for j in plan.jobs)
    assert main(["collect", str(study)]) == 0
    frame = __import__("pandas").read_csv(study_dir / "collected.csv")
    assert set(frame["job_id"]) == {j.id for j in plan.jobs if j.stage == "downstream"}
    stored = load_plan(study_dir)
    assert [j.id for j in stored.jobs] == [j.id for j in plan.jobs]
    assert [j.schedule for j in stored.jobs] == [j.schedule for j in plan.jobs]
    # other seeds than the launched ones are planned afresh (and need the data)
    assert main(["status", str(study), "--seeds", "2"]) == 2


def test_launch_writes_the_plan(tmp_path):
    from harness.launch import launch

    plan = make_plan(load_study(write_micro(tmp_path)))
    root = tmp_path / "results"
    launch(plan, executor="slurm", results_root=root, dry_run=True)
    assert not (root / "micro" / PLAN_FILE).exists()  # a dry run writes nothing
    for job in plan.jobs:  # nothing to do: every job is done already
        R.atomic_write_json(root / "micro" / job.id / R.METRICS, {"job_id": job.id, "metrics": []})
    launch(plan, executor="debug", results_root=root)
    assert [j.id for j in load_plan(root / "micro").jobs] == [j.id for j in plan.jobs]


def test_every_planned_job_knows_its_updates(tmp_path):
    plan = make_plan(load_study(write_micro(tmp_path)))
    finetune = plan.downstream[0]
    n_train = len(__import__("harness.data", fromlist=["get_index"]).get_index("synthetic-objects", "train"))
    params = finetune.config["params"]
    assert finetune.updates == params["epochs"] * (n_train // params["batch_size"]) > 0
    for job in plan.pretrain:
        assert job.updates == (job.config["schedule"]["total_updates"] if "schedule" in job.config else None)


def test_segmentation_paper_schedule_and_estimate():
    from harness.tasks import TASKS

    params = TASKS.get("segmentation").resolved_params("paper")  # epochs: None, updates: 160000
    sched = downstream_schedule(params, n_train=20_210)
    assert (sched.total_updates, sched.warmup_updates, sched.images) == (160_000, 1500, 160_000 * 16)
    job = Job("seg", "downstream", {"task": "segmentation", "params": params, "model": "vit-b16"}, {},
              Resources(), schedule=sched.to_dict())
    assert job_flops(job, relative_cost=8.0) > 0
    knn = downstream_schedule(TASKS.get("knn").resolved_params("paper"), n_train=1000)
    assert (knn.total_updates, knn.images) == (0, 1000)  # k-NN trains nothing and reads the set once


def test_downstream_metrics_report_the_updates_run(tmp_path, one_thread):
    from harness.job import JobSpec, run_job

    plan = make_plan(load_study(write_micro(tmp_path, methods=["none"], method_params={})))
    study_dir = tmp_path / "results" / "micro"
    for job in plan.jobs:
        spec = JobSpec(job.id, job.stage, job.config, job.coords, "micro", "tiny", str(study_dir), job.upstream, "cpu")
        doc = run_job(spec)
        assert doc["updates"] == (job.updates or 0)
    assert plan.downstream[0].updates > 0


# ---- SLURM queries --------------------------------------------------------------------------------------------

FAKE_SACCT = """#!{python}
import json, os, sys
ids = sys.argv[sys.argv.index("-j") + 1]
with open(os.environ["FAKE_SACCT_LOG"], "a") as f:
    f.write(ids + "\\n")
if os.environ.get("FAKE_SACCT_FAIL"):
    sys.exit("sacct: error: Problem talking to the database")
print("\\n".join(f"{{i}}_[0-1]|PENDING|Priority" for i in ids.split(",")))
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(FAKE_SACCT.format(python=sys.executable))
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SACCT_LOG", str(tmp_path / "sacct.log"))
    return tmp_path / "sacct.log"


def _slurm_jobs(study_dir: Path, n: int) -> list[Job]:
    jobs = []
    for i in range(n):
        job = Job(f"job{i}", "pretrain", {}, {"method": "m", "pretrain_dataset": None, "fraction": None,
                                             "epochs": None, "seed": i}, Resources())
        R.atomic_write_json(study_dir / job.id / R.SUBMITTED, {"executor": "slurm", "slurm_id": f"{1000 + i}_{i % 2}"})
        jobs.append(job)
    return jobs


def test_sacct_is_queried_in_chunks_under_the_argument_cap(tmp_path, fake_slurm, monkeypatch):
    jobs = _slurm_jobs(tmp_path / "study", 25)
    monkeypatch.setattr(state_mod, "SACCT_ARG_CHARS", 20)  # four 4-digit ids per call
    statuses = job_statuses(jobs, tmp_path / "study")
    calls = fake_slurm.read_text().splitlines()
    assert len(calls) == 7 and all(len(c) <= 20 for c in calls)
    assert sorted(x for c in calls for x in c.split(",")) == [str(1000 + i) for i in range(25)]
    assert all(s.detail.startswith(f"slurm {1000 + i}_{i % 2} PENDING") for i, s in enumerate(statuses.values()))


def test_id_chunks_keep_every_id_once():
    ids = [str(i) for i in range(1, 500)]
    chunks = id_chunks(ids, 30)
    assert [i for c in chunks for i in c] == ids and all(len(",".join(c)) <= 30 for c in chunks)
    assert id_chunks([], 30) == [] and id_chunks(["123456"], 3) == [["123456"]]


def test_a_failed_sacct_is_reported_not_read_as_no_state(tmp_path, fake_slurm, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_SACCT_FAIL", "1")
    with pytest.raises(SlurmQueryError, match="Problem talking to the database"):
        sacct_states(["12_0"])
    study = write_micro(tmp_path, methods=["none"], method_params={})
    plan = make_plan(load_study(study))
    study_dir = Path(os.environ["HARNESS_RESULTS"]) / "micro"
    save_plan(plan, study_dir)
    R.atomic_write_json(study_dir / plan.jobs[0].id / R.SUBMITTED, {"executor": "slurm", "slurm_id": "12_0"})
    assert main(["status", str(study)]) == 2
    assert "sacct failed" in capsys.readouterr().err


# ---- report ---------------------------------------------------------------------------------------------------

def test_tables_scan_their_cells_once_per_rendering(monkeypatch):
    from analysis import tables as T
    from analysis.stats import Sample

    table = T.Table("t", "t", "row", [f"r{i}" for i in range(30)], [f"c{j}" for j in range(20)])
    table.cells = {(r, c): Sample((1.5, 2.5)) for r in table.rows for c in table.columns}
    scans = []
    real = T.Table.decimals
    monkeypatch.setattr(T.Table, "decimals", property(lambda self: scans.append(1) or real.fget(self)))
    T.to_markdown(table), T.to_latex(table), table.text_frame()
    assert len(scans) == 3
    assert table.text("r0", "c0") == "2.00 ± 0.71 (2)"


def test_plan_json_round_trips(tmp_path):
    plan = make_plan(load_study(write_micro(tmp_path)))
    path = save_plan(plan, tmp_path / "s")
    stored = load_plan(tmp_path / "s")
    assert json.loads(path.read_text())["scale"] == "tiny" and stored.seeds == [0]
    assert [(j.id, j.config, j.coords, j.resources, j.upstream, j.schedule) for j in stored.jobs] == \
           [(j.id, j.config, j.coords, j.resources, j.upstream, j.schedule) for j in plan.jobs]


def test_report_reads_job_parameters_from_the_launched_plan(tmp_path):
    from analysis.provenance import varying_params

    study = write_micro(tmp_path, fractions=[0.1], method_params={"supervised": {"batch_size": 32}})
    data = yaml.safe_load(study.read_text())
    data["scales"]["tiny"]["downstream"].append({"task": "finetune", "dataset": "synthetic-objects",
                                                 "params": {"epochs": 2, "batch_size": 128}})
    study.write_text(yaml.safe_dump(data))
    plan = make_plan(load_study(study))
    save_plan(plan, tmp_path / "s")  # no job folder: the parameters can only come from plan.json
    import pandas as pd

    jobs = pd.DataFrame({"job_id": [j.id for j in plan.downstream], "stage": "downstream", "method": None,
                         "task": "finetune"})
    assert sorted(varying_params(tmp_path / "s", jobs)) == ["epochs=1"] * 2 + ["epochs=2"] * 2


def test_placeholder_manifests_of_missing_roots_leave_no_summary(tmp_path, monkeypatch):
    from harness.data import manifest_summary, without_roots
    from harness.data.roots import cache_dir

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    with without_roots() as missing:
        digest, images = manifest_summary("imagenet", "train", 0.1, 0)
    assert "imagenet" in missing and images >= 1 and digest
    assert list(cache_dir("manifests", "summaries").iterdir()) == []


def test_plan_json_of_one_dict_per_job_is_still_read(tmp_path):
    from harness.plan import _Shared, load_planned_jobs

    plan = make_plan(load_study(write_micro(tmp_path)))
    shared = _Shared()
    jobs = [{"id": job.id, "stage": job.stage, "config": shared.pack(job.config), "coords": job.coords,
             "resources": shared.ref(job.resources.model_dump()), "upstream": job.upstream,
             "unavailable": job.unavailable, "schedule": shared.ref(job.schedule)} for job in plan.jobs]
    doc = {"study": plan.study.name, "scale": "tiny", "seeds": [0], "source": plan.study.source, "source_sha256": "",
           "shared": shared.values, "jobs": jobs}  # the layout before jobs were stored as rows
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / PLAN_FILE).write_text(json.dumps(doc))
    save_plan(plan, tmp_path / "new")
    old, new = load_plan(tmp_path / "old"), load_plan(tmp_path / "new")
    assert [(j.id, j.stage, j.config, j.coords, j.resources, j.upstream, j.schedule) for j in old.jobs] == \
           [(j.id, j.stage, j.config, j.coords, j.resources, j.upstream, j.schedule) for j in new.jobs]
    assert load_planned_jobs(tmp_path / "old") == load_planned_jobs(tmp_path / "new")
    assert len(json.loads((tmp_path / "new" / PLAN_FILE).read_text())["jobs"][0]) == 10  # one row per job


def test_cycle_collection_is_restored_after_a_pause():
    import gc

    from harness import cycles

    assert gc.isenabled()
    with cycles.paused():
        assert not gc.isenabled()
        with cycles.collecting_new_only():
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == 0
