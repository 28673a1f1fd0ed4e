"""Run a test's worker in two gloo processes on this machine."""

from __future__ import annotations

import socket
from collections.abc import Callable


def spawn_two_ranks(worker: Callable[[int, int, str], None], out: str) -> None:
    """``worker(rank, port, out)`` in two processes that rendezvous on a free local port."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(port, out), nprocs=2, join=True)
