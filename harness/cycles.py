"""The cycle collector around work that builds many containers without reference cycles (decoded JSON, rows of
job states, frames): each collection of the oldest generation walks every live container, so a report of
50,000 jobs spent about 0.6 s of CPU in collections that found nothing to free."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside (reference counting still frees everything acyclic)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def collecting_new_only() -> Iterator[None]:
    """Collection on, for work that makes cycles (matplotlib figures), over the objects made inside only: what
    exists on entry is frozen (left out of every collection) until the end."""
    enabled = gc.isenabled()
    gc.freeze()
    gc.enable()
    try:
        yield
    finally:
        gc.unfreeze()
        if not enabled:
            gc.disable()
