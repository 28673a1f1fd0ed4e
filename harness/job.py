"""The single entry point a worker runs: one job spec in, ``results/<study>/<job-id>/`` out.

``run_job`` builds the method or task, trains with checkpoint/resume and writes ``metrics.json`` atomically
and last. ``JobRunner`` wraps it for submitit: it is Checkpointable, so on preemption or timeout the job is
requeued with the same spec and resumes from ``checkpoint.pt``.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import distributed
from harness import results as R

log = logging.getLogger("harness.job")


@dataclass
class JobSpec:
    """Everything a worker needs; plain values so that it pickles and serialises as JSON."""

    job_id: str
    stage: str
    config: dict[str, Any]
    coords: dict[str, Any]
    study: str
    scale: str
    study_dir: str
    upstream: str | None = None
    device: str = "auto"
    datasets: dict[str, Any] = field(default_factory=dict)  # the study's own dataset declarations
    grad_accumulation: int = 1  # micro-batches per update (a resource: the update is the same)

    @property
    def job_dir(self) -> Path:
        return Path(self.study_dir) / self.job_id


class UpstreamNotDone(RuntimeError):
    pass


class AlreadyRunning(RuntimeError):
    """Another live process trains this job's folder."""


RUN_LOCK_TIMEOUT_S = 120  # a lock of a process on a node that died lingers on NFS until its lease expires


def _hold_run_lock(spec: JobSpec):
    """Hold the job folder's run lock for the whole run and say who holds it (``worker.json``). The lock goes
    with the process, however it ends, so two trainers never share a folder."""
    from filelock import FileLock, Timeout

    lock = FileLock(spec.job_dir / R.RUN_LOCK, timeout=RUN_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        holder = R.read_json(spec.job_dir / R.WORKER) or {}
        raise AlreadyRunning(f"job {spec.job_id} is already being trained by pid {holder.get('pid')} on "
                             f"{holder.get('host')}") from None
    R.atomic_write_json(spec.job_dir / R.WORKER, R.process_identity())
    return lock


def _existing_metrics(job_dir: Path) -> dict[str, Any] | None:
    from harness.errors import CorruptResultError

    try:
        return R.read_metrics(job_dir)
    except CorruptResultError as e:
        log.warning("%s; running the job again", e)
        return None


def _attach_log(job_dir: Path) -> logging.Handler:
    from harness.joblog import JsonFormatter

    handler = logging.FileHandler(job_dir / R.LOG)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("harness")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def _configure_threads(config: dict[str, Any]) -> None:
    import os

    import torch

    # a CPU job's numbers depend on its torch thread count (the split of every reduction), so the plan fixes the
    # count in the job's identity; the executor's choice only applies to jobs on other devices
    n = config.get("threads") or int(os.environ.get("HARNESS_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "0")) or 0)
    if n > 0:
        torch.set_num_threads(n)


def run_pretrain(spec: JobSpec) -> tuple[list[dict], int]:
    from harness.data import get_index, get_manifest
    from harness.data.images import ImageListDataset
    from harness.data.roots import cache_dir
    from harness.engine import device_for, seed_everything, train
    from harness.methods import METHODS, PretrainData
    from harness.models.vit import encoder_config, save_encoder
    from harness.schedule import job_schedule, train_config

    cfg = spec.config
    method_cls = METHODS.get(cfg["method"])
    encoder_cfg = encoder_config(cfg["model"])
    params = cfg["params"]
    device = device_for(spec.device)
    seed_everything(cfg["seed"])
    job_dir = spec.job_dir

    if not method_cls.uses_data:
        method = method_cls(encoder_cfg, params, None)
        save_encoder(method.exported_encoder(), encoder_cfg, job_dir / R.ENCODER, method.pooling)
        return [], 0

    data = cfg["data"]
    index = get_index(data["dataset"], data["split"])
    manifest = get_manifest(data["dataset"], data["split"], data["fraction"], data["subset_seed"])
    if manifest.content_hash != data["manifest"]:
        raise RuntimeError(f"the images of {data['dataset']} changed since this job was planned "
                           f"(manifest {manifest.content_hash} != {data['manifest']}); re-plan the study")
    num_classes = len(index.classes) if index.classes else None
    method = method_cls(encoder_cfg, params, num_classes).to(device)
    method.prepare(PretrainData(ImageListDataset(index, manifest.indices), num_classes, manifest.content_hash,
                                cache_dir("methods", cfg["method"])))
    dataset = ImageListDataset(index, manifest.indices, transform=method.train_transform())
    sched = job_schedule(cfg)
    method.updates_per_epoch = cfg["schedule"]["total_updates"] / max(cfg["schedule"]["epochs"], 1)
    tc = train_config(params, sched, cfg["seed"], accum_steps=spec.grad_accumulation)
    state = train(method, method.training_step, dataset, tc, job_dir / R.CHECKPOINT,
                  desc=f"{spec.job_id[:40]}", after_step=method.after_step, collate_fn=method.collate_fn(),
                  device=device, optimizer_model=method.optimized_module(),
                  before_optimizer_step=method.before_optimizer_step)
    if distributed.is_main():
        save_encoder(method.exported_encoder(), encoder_cfg, job_dir / R.ENCODER, method.pooling)
    rows = [{"name": "pretrain_loss", "value": state.history[-1]["loss"], "split": "train"}]
    return rows, state.step


def run_downstream(spec: JobSpec) -> tuple[list[dict], int]:
    from harness.data import dataset_fingerprint
    from harness.engine import device_for, seed_everything
    from harness.models.vit import encoder_config
    from harness.tasks import TASKS, TaskContext

    cfg = spec.config
    encoder_path = Path(spec.study_dir) / cfg["upstream"] / R.ENCODER
    if not (Path(spec.study_dir) / cfg["upstream"] / R.METRICS).exists() or not encoder_path.exists():
        raise UpstreamNotDone(f"upstream job {cfg['upstream']} has not finished (no {encoder_path})")
    if "dataset_fingerprint" in cfg and (now := dataset_fingerprint(cfg["dataset"])) != cfg["dataset_fingerprint"]:
        raise RuntimeError(f"dataset {cfg['dataset']} changed since this job was planned (fingerprint {now} != "
                           f"{cfg['dataset_fingerprint']}); re-plan the study")
    seed_everything(cfg["seed"])
    task = TASKS.get(cfg["task"])()
    ctx = TaskContext(job_dir=spec.job_dir, params=cfg["params"], encoder_cfg=encoder_config(cfg["model"]),
                      encoder_path=encoder_path, dataset=cfg["dataset"], seed=cfg["seed"],
                      device=device_for(spec.device), scale=spec.scale)
    rows = task.run(ctx)
    return rows, ctx.updates


def _curves(spec: JobSpec, main: bool):
    """Record the job's training curves in its folder (rank 0 only): history.jsonl and TensorBoard events."""
    from contextlib import nullcontext

    from harness.curves import active, recording

    return recording(spec.job_dir, spec.job_dir) if main else nullcontext(active())


def run_job(spec: JobSpec) -> dict[str, Any]:
    """Run one job to completion (or resume it); returns the metrics document it wrote.

    In a job with several processes every rank runs this; only rank 0 writes the job folder."""
    from harness.checkpoint import discard_previous
    from harness.engine import device_for
    from harness.environment import environment, provenance

    job_dir = spec.job_dir
    job_dir.mkdir(parents=True, exist_ok=True)
    if spec.datasets:
        from harness.data.declare import declare_portable

        declare_portable(spec.datasets)
    if (existing := _existing_metrics(job_dir)) is not None:
        return existing
    distributed.init_from_environment(device_for(spec.device))
    main = distributed.is_main()
    run_lock = _hold_run_lock(spec) if main else None
    handler = _attach_log(job_dir) if main else logging.NullHandler()
    start = time.time()
    env: dict[str, Any] = {}
    try:
        if main:
            (job_dir / R.FAILED).unlink(missing_ok=True)
            R.atomic_write_json(job_dir / R.SPEC, asdict(spec))
            env = environment()
            R.atomic_write_json(job_dir / R.ENV, {**env, "world_size": distributed.world_size()})
        _configure_threads(spec.config)
        log.info("job %s starts (%s)", spec.job_id, spec.stage)
        with _curves(spec, main) as curves:
            rows, updates = (run_pretrain if spec.stage == "pretrain" else run_downstream)(spec)
            curves.eval_rows(rows)
        doc = {"job_id": spec.job_id, "study": spec.study, "scale": spec.scale, "stage": spec.stage,
               "upstream": spec.upstream, **spec.coords, "metrics": rows, "updates": updates,
               "wall_time_s": round(time.time() - start, 2), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "provenance": provenance(env)}
        if main:
            R.atomic_write_json(job_dir / R.METRICS, doc)
            discard_previous(job_dir / R.CHECKPOINT)
        log.info("job %s done: %s", spec.job_id, rows)
        return doc
    except Exception as e:
        if not main:
            raise
        R.atomic_write_text(job_dir / R.TRACEBACK, traceback.format_exc())
        R.atomic_write_json(job_dir / R.FAILED, {"error": f"{type(e).__name__}: {e}", "traceback": str(job_dir / R.TRACEBACK),
                                                "log": str(job_dir / R.LOG), "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        log.error("job %s failed: %s", spec.job_id, e)
        raise
    finally:
        logging.getLogger("harness").removeHandler(handler)
        handler.close()
        if run_lock is not None:
            (job_dir / R.WORKER).unlink(missing_ok=True)
            run_lock.release()


class JobRunner:
    """The callable submitit pickles. Checkpointable: on preemption/timeout submitit calls ``checkpoint`` and
    requeues the same spec; the engine writes ``checkpoint.pt`` before it lets that happen (and on an interval of
    updates or wall time), so the requeued run resumes from the update it stopped at."""

    def __call__(self, spec: JobSpec) -> dict[str, Any]:
        return run_job(spec)

    def checkpoint(self, spec: JobSpec):
        import submitit

        return submitit.helpers.DelayedSubmission(JobRunner(), spec)
