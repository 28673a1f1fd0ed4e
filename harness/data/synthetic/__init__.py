"""Deterministic generators that write stand-ins of real datasets, in the real datasets' formats.

Every generator has the signature ``generate(root, seed, **sizes)``; with the default sizes it writes the
tiny set the harness caches on first use. Images are PNG (byte-deterministic for a seed).
"""

from __future__ import annotations

import os


def progress_bar(total: int, desc: str):
    """A tqdm bar, hidden when ``HARNESS_PROGRESS=0`` (tests, workers)."""
    from tqdm import tqdm

    desc = desc.removesuffix(".partial")  # generators write into <root>.partial, then rename
    return tqdm(total=total, desc=desc, unit="img", disable=os.environ.get("HARNESS_PROGRESS", "1") == "0")
