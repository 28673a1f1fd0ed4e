"""What planning needs of the registered methods and tasks (their declared defaults, flags, costs), without
importing torch.

The classes in ``harness/methods`` and ``harness/tasks`` stay the one source of truth. Their declared class
attributes (plain data: ``defaults``, ``uses_data``, ``relative_cost``, ...) are kept in the cache
(``$HARNESS_CACHE/declarations/<hash>.json``), keyed by a hash of the source files that define them: editing
any of those files changes the key, so the next command imports the packages once (torch included) and writes
a fresh snapshot. ``plan``, ``status`` and study validation read the snapshot and never import torch; in a
process that has imported the packages anyway (a worker, the tests), the registries themselves answer.
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from harness.registry import Registry, resolve_params

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCES = ("methods", "tasks", "registry.py")  # what defines the declarations (and resolve_params)


class Declared:
    """A registered method or task as plain data: its declared attributes and ``resolved_params``."""

    def __init__(self, kind: str, attrs: dict[str, Any], base: dict[str, Any] | None):
        self.__dict__.update(attrs)
        self._kind, self._base = kind, base

    def resolved_params(self, scale: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        return resolve_params(self._kind, self.name, self.defaults, scale, overrides, base=self._base)


def _source_hash() -> str:
    h = hashlib.sha256()
    for entry in SOURCES:
        path = PACKAGE_DIR / entry
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f"{f.relative_to(PACKAGE_DIR)}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _plain(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _declared_attributes(cls: type) -> dict[str, Any]:
    """Public, JSON-serialisable class attributes declared by harness classes of ``cls``'s MRO."""
    attrs: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("harness."):
            continue
        for key, value in vars(klass).items():
            if not key.startswith("_") and not callable(value) and not isinstance(value, (classmethod, staticmethod,
                                                                                          property)) and _plain(value):
                attrs[key] = value
    return attrs


def _snapshot() -> dict[str, Any]:
    from harness.methods import METHODS, OPTIM_DEFAULTS
    from harness.tasks import TASKS

    return {"method_base": OPTIM_DEFAULTS,
            "methods": {name: _declared_attributes(cls) for name, cls in METHODS.items()},
            "tasks": {name: _declared_attributes(cls) for name, cls in TASKS.items()}}


@cache
def _load() -> dict[str, Any]:
    from harness.data.roots import cache_dir
    from harness.results import atomic_write_text

    path = cache_dir("declarations") / f"{_source_hash()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        snapshot = _snapshot()
        atomic_write_text(path, json.dumps(snapshot))
        return snapshot


def _registry(kind: str, entries: dict[str, dict], base: dict | None) -> Registry[Declared]:
    registry: Registry[Declared] = Registry(kind)
    for name, attrs in entries.items():
        registry.register(name)(Declared(kind, attrs, base))
    return registry


@cache
def _snapshot_registry(kind: str) -> Registry[Declared]:
    snap = _load()
    return _registry(kind, snap[f"{kind}s"], snap["method_base"] if kind == "method" else None)


def methods() -> Registry:
    """The registered pre-training methods: the classes themselves once their package is imported (it is the
    truth), else their declarations from the snapshot."""
    if "harness.methods" in sys.modules:
        return sys.modules["harness.methods"].METHODS
    return _snapshot_registry("method")


def tasks() -> Registry:
    """The registered downstream tasks: the classes once imported, else their declarations."""
    if "harness.tasks" in sys.modules:
        return sys.modules["harness.tasks"].TASKS
    return _snapshot_registry("task")
