"""Launch: turn planned jobs into submissions (debug / local / slurm) and never do work twice.

A re-run skips jobs whose results are complete, skips jobs still running, re-submits failed jobs only when
asked (``retry_failed``) and resumes interrupted ones from their checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import results as R
from harness.errors import HarnessError, storage_error
from harness.launch.state import JobStatus, claim_jobs, job_statuses, release_claims
from harness.plan import Job, Plan, save_plan

if TYPE_CHECKING:  # harness.job imports torch; status and collect import this package
    from harness.job import JobSpec
from harness.results import JobState

EXECUTORS = ("debug", "local", "slurm")


@dataclass
class LaunchReport:
    skipped_done: list[str] = field(default_factory=list)
    skipped_running: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)  # failed before; not retried without --retry-failed
    submitted: list[str] = field(default_factory=list)
    outcome: dict[str, str] = field(default_factory=dict)  # debug/local: job id -> "done" or the error
    slurm_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [k for k, v in self.outcome.items() if v != "done"]


def study_dir_for(plan: Plan, results_root: Path) -> Path:
    return results_root / plan.study.name


def job_spec(job: Job, plan: Plan, study_dir: Path) -> JobSpec:
    from harness.job import JobSpec

    return JobSpec(job_id=job.id, stage=job.stage, config=job.config, coords=job.coords, study=plan.study.name,
                   scale=plan.study.scale_name, study_dir=str(study_dir), upstream=job.upstream,
                   device=plan.study.scale.device, datasets=plan.study.datasets,
                   grad_accumulation=job.resources.grad_accumulation)


def select(plan: Plan, statuses: dict[str, JobStatus], retry_failed: bool) -> tuple[list[Job], LaunchReport]:
    report = LaunchReport()
    chosen: list[Job] = []
    chosen_ids: set[str] = set()
    for job in plan.pretrain + plan.downstream:  # pre-training first: a downstream job looks at its upstream
        st = statuses[job.id].state
        if st == JobState.DONE:
            report.skipped_done.append(job.id)
        elif st == JobState.RUNNING:
            report.skipped_running.append(job.id)
        elif st == JobState.FAILED and not retry_failed:
            report.skipped_failed.append(job.id)
        elif st == JobState.DEPENDENCY_FAILED and not retry_failed and job.upstream not in chosen_ids:
            report.skipped_failed.append(job.id)
        elif job.upstream and statuses[job.upstream].state in (JobState.FAILED, JobState.DEPENDENCY_FAILED) \
                and job.upstream not in chosen_ids:
            report.skipped_failed.append(job.id)
        else:
            chosen.append(job)
            chosen_ids.add(job.id)
    return chosen, report


def ensure_writable(study_dir: Path) -> None:
    """Fail before any work when the results root is read-only or full, naming it."""
    import tempfile

    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=study_dir):
            pass
    except OSError as e:
        raise storage_error(e, study_dir.parent) from e


def _run_here(specs: list[JobSpec], chosen: list[Job], executor: str, report: LaunchReport, max_parallel: int,
              threads_per_job: int) -> dict[str, str]:
    from harness.launch.local import run_debug, run_local

    if executor == "debug":
        return run_debug(specs)
    timeout = max(j.resources.timeout_min for j in chosen)
    gpus = {j.id: j.resources.gpus_per_node for j in chosen}
    return run_local(specs, set(report.skipped_done), max_parallel, threads_per_job, timeout, gpus)


def launch(plan: Plan, executor: str = "local", results_root: Path | None = None, retry_failed: bool = False,
           dry_run: bool = False, max_parallel: int = 2, threads_per_job: int = 1, profile=None) -> LaunchReport:
    if executor not in EXECUTORS:
        raise HarnessError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    unavailable = sorted({j.unavailable for j in plan.jobs if j.unavailable})
    if unavailable:
        raise HarnessError("this study cannot run yet: " + "; ".join(unavailable) +
                           " (remove those methods from the study, or use a scale that does not list them)")
    if max_parallel < 1:
        raise HarnessError(f"--max-parallel must be at least 1 (got {max_parallel})")
    results_root = results_root or R.default_results_root()
    study_dir = study_dir_for(plan, results_root)
    if not dry_run:  # a dry run writes nothing
        ensure_writable(study_dir)
    statuses = job_statuses(plan.jobs, study_dir)
    chosen, report = select(plan, statuses, retry_failed)
    if not dry_run:  # another driver may have taken some of them since the states were read
        won = claim_jobs(chosen, statuses, study_dir, executor)
        won_ids = {j.id for j in won}
        report.skipped_running += [j.id for j in chosen if j.id not in won_ids]
        chosen = won
    specs = [job_spec(j, plan, study_dir) for j in chosen]
    report.submitted = [s.job_id for s in specs]
    if dry_run and executor != "slurm":
        return report
    if not dry_run:  # status, collect and report read the launched plan instead of re-planning
        save_plan(plan, study_dir)
    if not specs:
        return report
    if executor in ("debug", "local"):
        from harness.launch.cancel import registered_driver

        try:
            with registered_driver(study_dir, executor):
                report.outcome = _run_here(specs, chosen, executor, report, max_parallel, threads_per_job)
        finally:
            release_claims([s.job_dir for s in specs])
    else:
        from harness.launch.profiles import load_profile
        from harness.launch.slurm import submit_slurm

        prof = profile if profile is not None and not isinstance(profile, str) else load_profile(profile)
        running_upstream = {}
        for jid in report.skipped_running:
            sub = R.read_json(study_dir / jid / R.SUBMITTED) or {}
            if sub.get("slurm_id"):
                running_upstream[jid] = sub["slurm_id"]
        folder = (Path(prof.submitit_folder).expanduser().resolve() / plan.study.name if prof.submitit_folder
                  else study_dir / "submitit" / "slurm")
        report.slurm_records = submit_slurm(
            [s for s in specs if s.stage == "pretrain"], [s for s in specs if s.stage == "downstream"],
            {"pretrain": plan.study.scale.resources.pretrain, "downstream": plan.study.scale.resources.downstream},
            prof, running_upstream, folder, dry_run=dry_run, job_resources={j.id: j.resources for j in chosen})
    return report
