"""Several processes per job: torch.distributed from the environment the scheduler provides.

A SLURM job with ``tasks_per_node x nodes > 1`` starts one process per task (submitit runs the same pickled
``JobRunner`` in each). ``init_from_environment`` turns submitit's view of the job (rank, world size, first
host) into torch's ``env://`` variables and joins the process group: NCCL on GPUs, gloo on CPU. Every rank
trains; only rank 0 writes files (checkpoint, encoder, metrics). The engine splits each step's global batch
across ranks (``shard``), so the number of updates and the effective batch size do not depend on the number
of processes.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def scheduler_world_size() -> int:
    """Processes started for this job: ``WORLD_SIZE`` (torchrun, or already exported), else the task count
    of a job that submitit's SLURM executor started. 1 otherwise, also for a local job run inside some
    other SLURM allocation, whose ``SLURM_NTASKS`` is not about it."""
    if os.environ.get("WORLD_SIZE", "").isdigit():
        return int(os.environ["WORLD_SIZE"])
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and os.environ.get("SLURM_NTASKS", "").isdigit():
        return int(os.environ["SLURM_NTASKS"])
    return 1


def init_from_environment(device: torch.device | None = None) -> bool:
    """Join the job's process group if the job has several processes; returns True when distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if scheduler_world_size() <= 1 or not dist.is_available():
        return False
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "RANK" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    use_cuda = device is not None and device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def shard(indices: list[int]) -> list[int]:
    """This rank's part of one global batch (strided, so all ranks get equal shares up to one item)."""
    return indices[rank()::world_size()] if active() else indices


def mean_across_ranks(value: float) -> float:
    """The mean of a per-rank scalar over all ranks (for logs; every rank gets the same number)."""
    if not active():
        return value
    on_gpu = dist.get_backend() == "nccl"
    t = torch.tensor([float(value)], dtype=torch.float64, device="cuda" if on_gpu else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def gather_batch(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's ``x`` concatenated in rank order, and where this rank's rows start. Differentiable: the
    backward pass sums the gradients every rank's loss sends to this rank's rows (``torch.distributed.nn``),
    so a loss over the gathered batch trains as one process on the global batch would. Needs equal row counts."""
    if not active():
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x)), rank() * x.shape[0]


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
