"""The ``harness`` command: plan, run, status, collect, report, and the registries (methods, tasks, data)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from harness.errors import HarnessError
from harness.registry import UnknownNameError


def _results_root(args) -> Path:
    """``--results``, else ``$HARNESS_RESULTS``, else the chosen cluster profile's ``results_root``, else ./results."""
    import os

    from harness.results import default_results_root

    if getattr(args, "results", None):
        return Path(args.results).resolve()
    cluster = getattr(args, "cluster", None) or os.environ.get("HARNESS_CLUSTER")
    if cluster and "HARNESS_RESULTS" not in os.environ:
        from harness.launch.profiles import load_profile

        if root := load_profile(cluster).results_root:
            return Path(root).expanduser().resolve()
    return default_results_root()


def _load(args):
    from harness.plan import make_plan
    from harness.spec import load_study

    return make_plan(load_study(args.study, args.scale, seeds=_seeds(getattr(args, "seeds", None))))


def _seeds(text: str | None) -> int | list[int] | None:
    """``--seeds 3`` -> seeds 0, 1, 2; ``--seeds 0,4`` -> seeds 0 and 4."""
    from harness.spec import parse_seeds

    return parse_seeds(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


# options that only one executor reads: naming them with another executor is an error, not silently ignored
EXECUTOR_OPTIONS = {"max_parallel": ("--max-parallel", "local"), "threads": ("--threads", "local")}


def _check_executor_options(args) -> None:
    for dest, (flag, executor) in EXECUTOR_OPTIONS.items():
        if getattr(args, dest) is not None and args.executor != executor:
            raise HarnessError(f"{flag} applies to the {executor} executor only; the {args.executor} executor "
                               f"would ignore it")


def cmd_plan(args) -> int:
    from harness.estimate import CPU_FLOPS, GPU_FLOPS, format_duration, job_flops
    from harness.launch import study_dir_for
    from harness.launch.state import job_statuses

    plan = _load(args)
    study_dir = study_dir_for(plan, _results_root(args))
    statuses = job_statuses(plan.jobs, study_dir)
    s = plan.study
    print(f"study {s.name} (scale {s.scale_name}, from {s.source}): {len(plan.pretrain)} pre-training + "
          f"{len(plan.downstream)} downstream jobs -> {study_dir}")
    total_flops, total_gpu_s = 0.0, 0.0
    print(f"{'state':<18} {'job':<64} {'updates':>9} {'estimate':>10}")
    for job in plan.jobs:
        flops = job_flops(job)
        total_flops += flops
        gpus = max(1, job.resources.gpus_per_node * job.resources.nodes)
        on_gpu = job.resources.gpus_per_node > 0
        seconds = flops / (GPU_FLOPS * gpus if on_gpu else CPU_FLOPS)
        total_gpu_s += seconds * gpus if on_gpu else 0.0
        state = "unavailable" if job.unavailable else statuses[job.id].state.value
        updates = job.config.get("schedule", {}).get("total_updates", "")
        print(f"{state:<18} {job.id:<64} {updates!s:>9} {format_duration(seconds):>10}")
    counts = Counter("unavailable" if j.unavailable else statuses[j.id].state.value for j in plan.jobs)
    print("states: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"compute: {total_flops / 1e15:.3g} PFLOP in total" +
          (f", about {total_gpu_s / 3600:.1f} GPU-hours" if total_gpu_s else "") +
          f" (assuming {GPU_FLOPS / 1e12:.0f} TFLOP/s per GPU, {CPU_FLOPS / 1e9:.0f} GFLOP/s on CPU)")
    for reason in sorted({j.unavailable for j in plan.jobs if j.unavailable}):
        print(f"unavailable: {reason}")
    return 0


def cmd_run(args) -> int:
    from harness.collect import collect
    from harness.launch import launch, study_dir_for

    _check_executor_options(args)
    plan = _load(args)
    root = _results_root(args)
    report = launch(plan, executor=args.executor, results_root=root, retry_failed=args.retry_failed,
                    dry_run=args.dry_run, max_parallel=args.max_parallel or 2, threads_per_job=args.threads or 1,
                    profile=args.cluster)
    print(f"{len(report.skipped_done)} done already, {len(report.skipped_running)} running, "
          f"{len(report.skipped_failed)} failed before (use --retry-failed to re-run), "
          f"{len(report.submitted)} {'to submit' if args.dry_run else 'submitted'}")
    for rec in report.slurm_records:
        print(json.dumps(rec, indent=1 if args.dry_run else None))
    if args.dry_run:
        for jid in report.submitted if args.executor != "slurm" else []:
            print(f"would run {jid}")
        return 0
    for jid in report.failed:
        print(f"FAILED {jid}: {report.outcome[jid]}  (see {study_dir_for(plan, root) / jid})")
    if args.executor in ("debug", "local"):
        study_dir = study_dir_for(plan, root)
        frame = collect(study_dir, only={j.id for j in plan.jobs})
        from analysis.report import write_report

        written = write_report(frame, study_dir, scale=plan.study.scale_name)
        print(f"collected {len(frame)} rows; wrote {len(written)} table/figure files under {study_dir}")
    return 1 if report.failed else 0


def cmd_status(args) -> int:
    from harness.launch import study_dir_for
    from harness.launch.state import job_statuses

    plan = _load(args)
    study_dir = study_dir_for(plan, _results_root(args))
    statuses = job_statuses(plan.jobs, study_dir)
    cells: dict[tuple, list] = {}
    for job in plan.jobs:
        cells.setdefault(job.cell, []).append(job)
    for cell, jobs in cells.items():
        method, ds, frac, ep = cell
        name = method if ds is None else f"{method} x {ds} x f{frac:g} x e{ep}"
        print(name)
        for job in jobs:
            st = statuses[job.id]
            stage = job.stage if job.stage == "pretrain" else f"{job.coords['task']}@{job.coords['task_dataset']}"
            line = f"  {stage:<24} {st.state.value:<18} {job.id}"
            if st.detail:
                line += f"  [{st.detail}]"
            print(line)
            if st.state.value in ("failed", "dependency-failed") and st.log:
                print(f"  {'':<24} log: {st.log}")
    counts = Counter(s.state.value for s in statuses.values())
    print("total: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def _collect_study(args):
    """Collect the study's finished jobs: those of its current plan (``--all``: every folder)."""
    from harness.collect import collect
    from harness.errors import DataRootError
    from harness.plan import make_plan
    from harness.spec import load_study

    study = load_study(args.study, args.scale, seeds=_seeds(args.seeds))
    study_dir = _results_root(args) / study.name
    only = None
    if not getattr(args, "all", False):
        try:
            only = {j.id for j in make_plan(study).jobs}
        except DataRootError as e:  # e.g. results copied from a cluster to a laptop without the datasets
            print(f"warning: cannot plan the study here ({e}); collecting every finished job", file=sys.stderr)
    return collect(study_dir, only), study_dir


def cmd_collect(args) -> int:
    frame, study_dir = _collect_study(args)
    print(f"{len(frame)} rows from {frame['job_id'].nunique()} jobs -> {study_dir / 'collected.csv'}, collected.parquet")
    return 0


def cmd_report(args) -> int:
    from analysis.report import write_report
    from harness.collect import load_collected
    from harness.spec import study_name

    if args.recollect:
        frame, study_dir = _collect_study(args)
    else:
        study_dir = _results_root(args) / study_name(args.study)
        frame = load_collected(study_dir)
    what = tuple(args.only) if args.only else None  # None: tables, figures, claims and the HTML page
    if frame.empty:
        print(f"no finished jobs under {study_dir}: run `harness run {args.study}` first", file=sys.stderr)
        return 1
    written = write_report(frame, study_dir, scale=args.scale, what=what)
    for p in written:
        print(p)
    return 0


def cmd_methods(args) -> int:
    from harness.methods import METHODS, OPTIM_DEFAULTS

    for name, cls in METHODS.items():
        print(f"{name:<12} {cls.description}")
        if cls.recipe:
            print(f"{'':<12}   recipe: {cls.recipe}")
        for scale in ("tiny", "paper"):
            params = {**OPTIM_DEFAULTS, **cls.defaults.get(scale, {})}
            print(f"{'':<12}   {scale}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    return 0


def cmd_tasks(args) -> int:
    from harness.tasks import TASKS

    for name, cls in TASKS.items():
        print(f"{name:<12} {cls.description} [{cls.dataset_kind}]")
        for scale in ("tiny", "paper"):
            print(f"{'':<12}   {scale}: " + ", ".join(f"{k}={v}" for k, v in cls.defaults.get(scale, {}).items()))
    return 0


def cmd_job(args) -> int:
    from harness.job import JobSpec, run_job

    path = Path(args.spec)
    try:
        spec = JobSpec(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise HarnessError(f"job spec not found: {path}") from None
    except (OSError, ValueError, TypeError) as e:  # unreadable, not JSON, or not a job spec's keys
        raise HarnessError(f"{path}: not a job spec ({e})") from None
    run_job(spec)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def study_cmd(name: str, help: str):
        sp = sub.add_parser(name, help=help)
        sp.add_argument("study", help="a study name (imagenet-fractions) or a YAML path")
        sp.add_argument("--scale", default=None, help="tiny (default) or paper, or another scale of the study")
        sp.add_argument("--results", default=None, help="results root (default ./results or $HARNESS_RESULTS)")
        sp.add_argument("--seeds", default=None, help="override the grid's seeds: N (0..N-1) or a list 0,1,2")
        return sp

    study_cmd("plan", "print the jobs, their state and a compute estimate; runs nothing").set_defaults(fn=cmd_plan)
    r = study_cmd("run", "run or submit the study's jobs that are not done")
    r.add_argument("--executor", default="local", choices=["debug", "local", "slurm"])
    r.add_argument("--retry-failed", action="store_true", help="re-submit jobs that failed before")
    r.add_argument("--dry-run", action="store_true", help="print what would be submitted, submit nothing")
    r.add_argument("--max-parallel", type=_positive_int, default=None, help="local executor: jobs at a time (2)")
    r.add_argument("--threads", type=_positive_int, default=None, help="local executor: torch threads per job (1)")
    r.add_argument("--cluster", default=None, help="cluster profile name or YAML path (default $HARNESS_CLUSTER or ci)")
    r.set_defaults(fn=cmd_run)
    st = study_cmd("status", "state of every job, by study cell and stage (one batched sacct call)")
    st.add_argument("--cluster", default=None, help="cluster profile whose results_root to read (default $HARNESS_CLUSTER)")
    st.set_defaults(fn=cmd_status)
    co = study_cmd("collect", "gather the study's finished jobs into results/<study>/collected.{csv,parquet}")
    co.add_argument("--all", action="store_true", help="also jobs the current study file no longer plans")
    co.set_defaults(fn=cmd_collect)
    rp = study_cmd("report", "write tables, figures, claims and report.html from stored results (runs nothing)")
    rp.add_argument("--only", nargs="*", choices=["tables", "figures", "claims", "html"])
    rp.add_argument("--recollect", action="store_true", help="re-read the job folders first")
    rp.set_defaults(fn=cmd_report)
    sub.add_parser("methods", help="list pre-training methods and their defaults").set_defaults(fn=cmd_methods)
    sub.add_parser("tasks", help="list downstream tasks and their defaults").set_defaults(fn=cmd_tasks)
    j = sub.add_parser("job", help="run one job from a spec.json (what a worker does)")
    j.add_argument("spec")
    j.set_defaults(fn=cmd_job)
    try:
        from harness.data.cli import add_data_commands
    except ImportError:
        pass
    else:
        add_data_commands(sub)
    from harness.export import add_export_command

    add_export_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (HarnessError, UnknownNameError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
