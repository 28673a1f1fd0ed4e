"""The debug (in-process) and local (subprocesses, concurrency limit) executors, through submitit.

Both run a dependency-aware loop in the driver: a downstream job starts once its pre-training job is done;
when a pre-training job fails, its downstream jobs are recorded as dependency-failed and the others go on.
The debug executor opens a post-mortem debugger on a failure only when its input is a terminal.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tqdm import tqdm

from harness import results as R
from harness.job import JobRunner, JobSpec
from harness.launch.state import claim_alive, trainer_alive


def _mark_dependency_failed(spec: JobSpec, upstream: str) -> None:
    R.atomic_write_json(spec.job_dir / R.FAILED, {"error": f"upstream job {upstream} failed", "dependency_failed": True,
                                                 "log": str(Path(spec.study_dir) / upstream / R.LOG)})


def _study_bar(total: int, done: int) -> tqdm:
    return tqdm(total=total, initial=done, desc="study", unit="job", position=0, dynamic_ncols=True,
                disable=os.environ.get("HARNESS_PROGRESS", "1") == "0")


def run_debug(specs: list[JobSpec]) -> dict[str, str]:
    """Run every spec in-process, in order (pre-training first). Returns ``{job_id: "done" | error}``."""
    import submitit

    outcome: dict[str, str] = {}
    failed: set[str] = set()
    executor = submitit.DebugExecutor(folder=os.path.join(specs[0].study_dir, "submitit", "debug") if specs else ".")
    interactive = sys.stdin is not None and sys.stdin.isatty()  # submitit's debug jobs open pdb on an exception
    with _study_bar(len(specs), 0) as bar:
        for spec in specs:
            if spec.upstream in failed:
                _mark_dependency_failed(spec, spec.upstream)
                failed.add(spec.job_id)
                outcome[spec.job_id] = f"dependency {spec.upstream} failed"
            else:
                try:
                    if interactive:
                        executor.submit(JobRunner(), spec).result()
                    else:
                        JobRunner()(spec)
                    outcome[spec.job_id] = "done"
                except Exception as e:  # recorded in failed.json by run_job
                    failed.add(spec.job_id)
                    outcome[spec.job_id] = f"{type(e).__name__}: {e}"
            bar.update()
    return outcome


def _follow_foreign_upstream(spec: JobSpec, done: set[str], failed: set[str]) -> None:
    """An upstream job run by another driver (or an earlier run): follow its folder until it ends."""
    state = R.local_job_state(Path(spec.study_dir) / spec.upstream)
    if state == R.JobState.DONE:
        done.add(spec.upstream)
    elif state in (R.JobState.FAILED, R.JobState.DEPENDENCY_FAILED):
        failed.add(spec.upstream)


def _alive(job_dir: Path) -> bool:
    return bool(claim_alive(job_dir))


def _record_process(spec: JobSpec, job) -> None:
    """Add the job's process to this driver's claim in ``submitted.json``."""
    claim = R.read_json(spec.job_dir / R.SUBMITTED) or {}
    R.atomic_write_json(spec.job_dir / R.SUBMITTED, {
        **claim, "executor": "local", "pid": int(job.job_id), "process": R.process_identity(int(job.job_id)),
        "submitted_at": time.time(), "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)})


def stop_orphaned_trainer(job_dir: Path, grace_s: float = 10.0) -> int | None:
    """A job process that died (killed, OOM) can leave its trainer running: stop it, so that a retry never
    trains the same folder twice. Returns the pid it stopped."""
    worker = trainer_alive(job_dir)
    if worker is None:
        return None
    pid = int(worker["pid"])
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        deadline = time.time() + wait
        while time.time() < deadline and R.identity_alive(worker):
            time.sleep(0.1)
        if not R.identity_alive(worker):
            return pid
    return pid


def failure_line(spec: JobSpec, error: Exception) -> str:
    """The console line of a failed job: the exception's last line and where its traceback is."""
    failed = R.read_json(spec.job_dir / R.FAILED) or {}
    if failed.get("error"):
        last = str(failed["error"]).strip().splitlines()[-1]
        return f"{last} (traceback: {failed.get('traceback') or failed.get('log')})"
    text = str(error).strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and "check full logs" not in ln and "or at paths" not in ln
             and not ln.strip().startswith("- /")]
    return f"{type(error).__name__}: {lines[-1].strip() if lines else ''}"


def run_local(specs: list[JobSpec], already_done: set[str], max_parallel: int, threads_per_job: int,
              timeout_min: int, gpus: dict[str, int] | None = None) -> dict[str, str]:
    """Run specs as local subprocesses, at most ``max_parallel`` at a time; the driver waits for all of them.

    ``gpus``: GPUs per job (its resources' ``gpus_per_node``). submitit's local executor shows a job GPUs
    0..n-1 through CUDA_VISIBLE_DEVICES and hides every GPU from a job that asks for none; jobs that run side by
    side share the same GPUs."""
    import submitit

    outcome: dict[str, str] = {}
    failed: set[str] = set()
    done = set(already_done)
    waiting = list(specs)
    running: dict[str, object] = {}
    folder = Path(specs[0].study_dir) / "submitit" / "local" / "%j" if specs else Path(".")
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=timeout_min)
    with _study_bar(len(specs), 0) as bar:
        ours = {s.job_id for s in specs}
        while waiting or running:
            for spec in list(waiting):
                if spec.upstream and spec.upstream not in ours | done | failed:
                    _follow_foreign_upstream(spec, done, failed)
                    if spec.upstream not in done | failed and not _alive(Path(spec.study_dir) / spec.upstream):
                        outcome[spec.job_id] = f"upstream {spec.upstream} stopped without a result; run again"
                        waiting.remove(spec)  # nobody runs it any more: do not wait forever, and record nothing
                        bar.update()
                        continue
                if spec.upstream in failed:
                    _mark_dependency_failed(spec, spec.upstream)
                    failed.add(spec.job_id)
                    outcome[spec.job_id] = f"dependency {spec.upstream} failed"
                    waiting.remove(spec)
                    bar.update()
                elif len(running) < max_parallel and (spec.upstream is None or spec.upstream in done):
                    os.environ["HARNESS_THREADS"] = str(threads_per_job)
                    executor.update_parameters(gpus_per_node=(gpus or {}).get(spec.job_id, 0))
                    job = executor.submit(JobRunner(), spec)
                    _record_process(spec, job)
                    running[spec.job_id] = job
                    waiting.remove(spec)
            for job_id, job in list(running.items()):
                if not job.done():
                    continue
                del running[job_id]
                bar.update()
                try:
                    job.result()
                    done.add(job_id)
                    outcome[job_id] = "done"
                except Exception as e:
                    failed.add(job_id)
                    spec = next(s for s in specs if s.job_id == job_id)
                    if not (spec.job_dir / R.FAILED).exists():  # died without a Python exception (killed, OOM)
                        stopped = stop_orphaned_trainer(spec.job_dir)
                        why = f"; stopped its trainer pid {stopped}" if stopped else ""
                        R.atomic_write_json(spec.job_dir / R.FAILED, {
                            "error": f"the job process ended without a result{why}", "log": str(job.paths.stderr)})
                    outcome[job_id] = failure_line(spec, e)
            time.sleep(0.2)
    return outcome
