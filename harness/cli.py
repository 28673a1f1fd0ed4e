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

    return make_plan(load_study(args.study, args.scale, seeds=_seeds(getattr(args, "seeds", None)),
                                sets=getattr(args, "set", None)))


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


def _relative_cost(job) -> float:
    from harness.declarations import methods, tasks

    if job.stage == "pretrain":
        return methods().get(job.config["method"]).relative_cost if job.config["method"] in methods() else 0.0
    return tasks().get(job.config["task"]).relative_cost


def cmd_plan(args) -> int:
    from harness.data import without_roots
    from harness.errors import DataRootError

    try:
        plan, missing = _load(args), {}
    except DataRootError:  # show the whole grid anyway, with every missing root at once
        with without_roots() as missing:
            plan = _load(args)
            return _print_plan(plan, args, missing)
    return _print_plan(plan, args, missing)


def _print_plan(plan, args, missing: dict[str, str]) -> int:
    from harness.estimate import CPU_FLOPS, GPU_FLOPS, format_duration, job_flops
    from harness.launch import study_dir_for
    from harness.launch.state import job_statuses

    study_dir = study_dir_for(plan, _results_root(args))
    statuses = job_statuses(plan.jobs, study_dir)
    s = plan.study
    lines = [f"study {s.name} (scale {s.scale_name}, from {s.source}): {len(plan.pretrain)} pre-training + "
             f"{len(plan.downstream)} downstream jobs -> {study_dir}",
             f"{'state':<18} {'job':<64} {'updates':>9} {'estimate':>10}"]
    total_flops, total_gpu_s = 0.0, 0.0
    gpu_s_by: Counter = Counter()  # (stage, method) -> GPU-seconds
    for job in plan.jobs:
        flops = job_flops(job, _relative_cost(job))
        total_flops += flops
        gpus = max(1, job.resources.gpus_per_node * job.resources.nodes)
        on_gpu = job.resources.gpus_per_node > 0
        seconds = flops / (GPU_FLOPS * gpus if on_gpu else CPU_FLOPS)
        total_gpu_s += seconds * gpus if on_gpu else 0.0
        gpu_s_by[(job.stage, job.coords["method"])] += seconds * gpus if on_gpu else 0.0
        state = "unavailable" if job.unavailable else statuses[job.id].state.value
        updates = "" if job.updates is None else job.updates
        lines.append(f"{state:<18} {job.id:<64} {updates!s:>9} {format_duration(seconds):>10}")
    counts = Counter("unavailable" if j.unavailable else statuses[j.id].state.value for j in plan.jobs)
    lines.append("states: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(f"compute: {total_flops / 1e15:.3g} PFLOP in total" +
                 (f", about {total_gpu_s / 3600:.1f} GPU-hours" if total_gpu_s else "") +
                 f" (assuming {GPU_FLOPS / 1e12:.0f} TFLOP/s per GPU, {CPU_FLOPS / 1e9:.0f} GFLOP/s on CPU)")
    for stage in ("pretrain", "downstream"):
        rows = {m: v for (st, m), v in gpu_s_by.items() if st == stage and v > 0}
        if rows:
            lines.append(f"GPU-hours {stage}: {sum(rows.values()) / 3600:.3g} (by method of pre-training: " +
                         ", ".join(f"{m} {v / 3600:.3g}" for m, v in sorted(rows.items())) + ")")
    lines += [f"unavailable: {reason}" for reason in sorted({j.unavailable for j in plan.jobs if j.unavailable})]
    from harness.plan import resolved_params_lines

    lines += ["resolved parameters (in the job identities):", *resolved_params_lines(plan)]
    print("\n".join(lines))
    if missing:
        print(f"\n{len(missing)} dataset(s) not found here; the estimate uses their declared image counts and the "
              "ids of jobs that read them are provisional:")
        for name, error in missing.items():
            print(f"  {name}: {error}")
        return 1
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
        print(f"FAILED {jid}: {_last_line(report.outcome[jid])}  (log: {study_dir_for(plan, root) / jid / 'log.txt'})")
    if args.executor in ("debug", "local"):
        study_dir = study_dir_for(plan, root)
        frame = collect(study_dir, only={j.id for j in plan.jobs}, scale=plan.study.scale_name)
        from analysis.report import write_report

        written = write_report(frame, study_dir, scale=plan.study.scale_name)
        print(f"collected {len(frame)} rows; wrote {len(written)} table/figure files under {study_dir}")
    return 1 if report.failed else 0


def _last_line(text: str) -> str:
    from harness.joblog import last_line

    return last_line(text)


def _study_header(args) -> tuple[str, str]:
    """(name, default scale) of the study file, read without validating its scales (which needs the registries)."""
    from harness.spec import study_header

    return study_header(args.study)


def _planned_jobs(args, study_dir: Path | None = None):
    """The jobs of the study at the asked scale and seeds: those of ``plan.json`` when the study was launched
    with them (no data root, no torch needed), else a fresh plan."""
    from harness.plan import load_plan, make_plan, source_changed
    from harness.spec import find_study_file, load_study

    name, default_scale = _study_header(args)
    study_dir = study_dir or _results_root(args) / name
    stored = load_plan(study_dir)
    seeds = _seeds(getattr(args, "seeds", None))
    seeds = list(range(seeds)) if isinstance(seeds, int) else seeds
    sets = getattr(args, "set", None)
    if not sets and stored is not None and stored.scale == (args.scale or default_scale) and seeds in (None, stored.seeds):
        if source_changed(stored, find_study_file(args.study)):
            print(f"note: {study_dir / 'plan.json'} is the plan the study was launched with; the study file changed "
                  "since (`harness plan` shows its new plan, `harness run` launches it)", file=sys.stderr)
        return stored.jobs, study_dir
    return make_plan(load_study(args.study, args.scale, seeds=_seeds(getattr(args, "seeds", None)),
                                sets=sets)).jobs, study_dir


def cmd_status(args) -> int:
    from harness.curves import progress_text
    from harness.launch.state import job_statuses

    jobs, study_dir = _planned_jobs(args)
    statuses = job_statuses(jobs, study_dir)
    cells: dict[tuple, list] = {}
    for job in jobs:
        cells.setdefault(job.cell, []).append(job)
    lines = []
    for cell, cell_jobs in cells.items():
        method, ds, frac, ep = cell
        lines.append(method if ds is None else f"{method} x {ds} x f{frac:g} x e{ep}")
        for job in cell_jobs:
            st = statuses[job.id]
            stage = job.stage if job.stage == "pretrain" else f"{job.coords['task']}@{job.coords['task_dataset']}"
            line = f"  {stage:<24} {st.state.value:<18} {job.id}"
            if st.state.value == "running" and (now := progress_text(study_dir / job.id)):
                line += f"  {now}"
            if st.detail:
                line += f"  [{_last_line(st.detail)}]"
            lines.append(line)
            if st.state.value in ("failed", "dependency-failed") and st.log:
                lines.append(f"  {'':<24} log: {st.log}")
    counts = Counter(s.state.value for s in statuses.values())
    lines.append("total: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("\n".join(lines))
    return 0


def _collect_study(args):
    """Collect the study's finished jobs: those of its plan (``--all``: every folder)."""
    from harness.collect import collect
    from harness.errors import DataRootError

    name, default_scale = _study_header(args)
    study_dir = _results_root(args) / name
    only, scale = None, None
    if not getattr(args, "all", False):
        try:
            only = {j.id for j in _planned_jobs(args, study_dir)[0]}
            scale = args.scale or default_scale
        except DataRootError as e:  # e.g. results copied from a cluster to a laptop without the datasets
            print(f"warning: cannot plan the study here ({e}); collecting every finished job", file=sys.stderr)
    return collect(study_dir, only, scale), study_dir


def cmd_collect(args) -> int:
    frame, study_dir = _collect_study(args)
    print(f"{len(frame)} rows from {frame['job_id'].nunique()} jobs -> {study_dir / 'collected.csv'}, collected.parquet")
    return 0


def cmd_report(args) -> int:
    from harness import cycles

    with cycles.paused():  # the imports and the collected frame make no garbage cycle worth a collection
        return _report(args)


def _report(args) -> int:
    from analysis.report import write_report
    from harness.collect import load_collected

    if args.recollect:
        frame, study_dir = _collect_study(args)
    else:
        study_dir = _results_root(args) / _study_header(args)[0]
        frame = load_collected(study_dir)
    what = tuple(args.only) if args.only else None  # None: tables, figures, claims and the HTML page
    if frame.empty:
        print(f"no finished jobs under {study_dir}: run `harness run {args.study}` first", file=sys.stderr)
        return 1
    written = write_report(frame, study_dir, scale=args.scale, what=what)
    for p in written:
        print(p)
    return 0


def _study_dir(args) -> Path:
    """The study's results folder, from the study file's name alone (no plan, no data needed)."""
    from harness.spec import study_name

    return _results_root(args) / study_name(args.study)


def cmd_logs(args) -> int:
    from harness import results as R
    from harness.joblog import follow, plain

    study_dir = _study_dir(args)
    jobs = [d for d in R.iter_job_dirs(study_dir) if (d / R.LOG).exists()]
    if args.job is None:  # every job's newest line
        for d in jobs:
            lines = (d / R.LOG).read_text().splitlines()
            print(f"{R.local_job_state(d).value:<18} {d.name}  {plain(lines[-1]) if lines else ''}")
        return 0
    matches = [d for d in jobs if d.name == args.job] or [d for d in jobs if args.job in d.name]
    if len(matches) != 1:
        names = "\n  ".join(d.name for d in matches or jobs)
        print(f"error: {'several' if matches else 'no'} jobs with a log match {args.job!r} under {study_dir}:\n  {names}",
              file=sys.stderr)
        return 2
    job_dir = matches[0]
    show = (lambda line: line) if args.json else plain
    if not args.follow:
        for line in (job_dir / R.LOG).read_text().splitlines():
            print(show(line))
        return 0
    ended = lambda: R.local_job_state(job_dir) in (R.JobState.DONE, R.JobState.FAILED)  # noqa: E731
    for line in follow(job_dir / R.LOG, stop=ended):
        print(show(line), flush=True)
    return 0


def cmd_cancel(args) -> int:
    from harness.launch.cancel import cancel

    stopped = cancel(_study_dir(args), args.stage)
    for line in stopped:
        print(f"stopped {line}")
    print(f"{len(stopped)} stopped" + ("" if stopped else " (nothing of this study is running)"))
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


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless its help says it) and keeps the examples' line breaks."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


EXAMPLES = {
    "harness": "examples:\n  harness plan imagenet-fractions\n  harness run imagenet-fractions --executor local\n"
               "  harness status imagenet-fractions\n  harness report imagenet-fractions",
    "plan": "example:\n  harness plan imagenet-fractions --scale paper --set 'pretrain.epochs=[100]'",
    "run": "examples:\n  harness run imagenet-fractions                      # tiny scale, local processes\n"
           "  harness run imagenet-fractions --scale paper --executor slurm --cluster mycluster.yaml",
    "status": "example:\n  harness status imagenet-fractions --scale paper",
    "collect": "example:\n  harness collect imagenet-fractions",
    "report": "example:\n  harness report imagenet-fractions --only html",
    "logs": "examples:\n  harness logs imagenet-fractions                 # every job's newest line\n"
            "  harness logs imagenet-fractions pre-mae -f       # follow one job (an id or a unique part of it)",
    "cancel": "example:\n  harness cancel imagenet-fractions --stage downstream",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"harness {version('harness')}"
    except PackageNotFoundError:
        return "harness (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__, epilog=EXAMPLES["harness"], formatter_class=_Help)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    def study_cmd(name: str, help: str, grid: bool = True):
        sp = sub.add_parser(name, help=help, description=help, epilog=EXAMPLES.get(name), formatter_class=_Help)
        sp.add_argument("study", help="a study name (imagenet-fractions) or a YAML path")
        sp.add_argument("--scale", default=None, help="scale of the study (default: the file's default_scale, tiny)")
        sp.add_argument("--results", default=None, help="results root (default: $HARNESS_RESULTS, else ./results)")
        if grid:
            sp.add_argument("--seeds", default=None, help="override the grid's seeds: N (0..N-1) or a list 0,1,2")
            sp.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                            help="override a key of the chosen scale, validated like the file (YAML value; "
                                 "repeatable): --set 'pretrain.epochs=[3]' --set downstream.0.params.epochs=2")
        return sp

    study_cmd("plan", "print the jobs, their state and a compute estimate; runs nothing").set_defaults(fn=cmd_plan)
    r = study_cmd("run", "run or submit the study's jobs that are not done")
    r.add_argument("--executor", default="local", choices=["debug", "local", "slurm"],
                   help="debug: one job after another in this process; local: subprocesses; slurm: sbatch")
    r.add_argument("--retry-failed", action="store_true", help="re-submit jobs that failed before")
    r.add_argument("--dry-run", action="store_true", help="print what would be submitted, submit nothing")
    r.add_argument("--max-parallel", type=_positive_int, default=None, help="local executor: jobs at a time (default: 2)")
    r.add_argument("--threads", type=_positive_int, default=None,
                   help="local executor: torch threads per job of a GPU study; a CPU job uses its plan's "
                        "cpus_per_task, part of its identity (default: 1)")
    r.add_argument("--cluster", default=None, help="cluster profile name or YAML path (default $HARNESS_CLUSTER or ci)")
    r.set_defaults(fn=cmd_run)
    st = study_cmd("status", "state of every job, by study cell and stage (reads the launched plan.json)")
    st.add_argument("--cluster", default=None, help="cluster profile whose results_root to read (default $HARNESS_CLUSTER)")
    st.set_defaults(fn=cmd_status)
    co = study_cmd("collect", "gather the study's finished jobs into results/<study>/collected.{csv,parquet}")
    co.add_argument("--all", action="store_true", help="also jobs the current study file no longer plans")
    co.set_defaults(fn=cmd_collect)
    rp = study_cmd("report", "write tables, figures, claims and report.html from stored results (runs nothing)")
    rp.add_argument("--only", nargs="*", choices=["tables", "figures", "claims", "html"])
    rp.add_argument("--recollect", action="store_true", help="re-read the job folders first")
    rp.set_defaults(fn=cmd_report)
    lg = study_cmd("logs", "print a job's log (or every job's newest line); -f follows it", grid=False)
    lg.add_argument("job", nargs="?", default=None, help="a job id or a unique part of one")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    lg.add_argument("--json", action="store_true", help="print the log's JSON lines as they are")
    lg.set_defaults(fn=cmd_logs)
    ca = study_cmd("cancel", "stop the study's running jobs (local processes, SLURM jobs) and its local drivers",
                   grid=False)
    ca.add_argument("--stage", default=None, choices=["pretrain", "downstream"], help="only this stage's jobs")
    ca.set_defaults(fn=cmd_cancel)
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
    from harness.export import add_export_command  # imports no torch until an export runs

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
