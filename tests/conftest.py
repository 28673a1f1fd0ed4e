"""Shared fixtures: every test gets its own cache and results folders (nothing leaks into ~/.cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SESSION_CACHE = Path(os.environ.get("HARNESS_TEST_CACHE", "/tmp/harness-test-cache"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # generated synthetic datasets are deterministic, so one cache serves the whole session
    monkeypatch.setenv("HARNESS_CACHE", str(SESSION_CACHE))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HARNESS_PROGRESS", "0")
    monkeypatch.chdir(REPO)
    for var in list(os.environ):
        if var.startswith("HARNESS_DATA_"):
            monkeypatch.delenv(var)
    from harness.data import DATASETS  # the built-in catalog; datasets a test's study declares go with the test

    registered = dict(DATASETS._entries)
    yield
    DATASETS._entries.clear()
    DATASETS._entries.update(registered)


@pytest.fixture
def one_thread():
    """Two shared cores: one torch thread per test process avoids oversubscription (10x slower otherwise)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
