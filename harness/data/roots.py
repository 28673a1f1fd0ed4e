"""Where datasets and caches live.

Real datasets: the environment variable ``HARNESS_DATA_<NAME>`` (e.g. ``HARNESS_DATA_IMAGENET``), else an entry
in the data-roots file (YAML ``{name: path}``; ``$HARNESS_DATA_ROOTS``, else ``./data_roots.yaml``, else
``~/.config/harness/data_roots.yaml``), else the ``root`` its declaration gives (a path or ``$VAR``). Synthetic datasets and every cache (indexes, manifests, vocabularies)
live under ``$HARNESS_CACHE`` (default ``~/.cache/harness``).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import yamlfile

from harness.errors import DataRootError


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_var_for(name: str) -> str:
    return "HARNESS_DATA_" + name.upper().replace("-", "_")


def data_roots_file() -> Path | None:
    candidates = [os.environ.get("HARNESS_DATA_ROOTS"), "data_roots.yaml", Path.home() / ".config/harness/data_roots.yaml"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def configured_root(name: str) -> Path | None:
    """The root a user configured for ``name``, or None; never checks that it exists."""
    if env := os.environ.get(env_var_for(name)):
        return Path(env).expanduser()
    if (f := data_roots_file()) is not None:
        roots = yamlfile.loads(f.read_text()) or {}
        if not isinstance(roots, dict):
            raise DataRootError(f"{f}: expected a mapping of dataset name to path, got {type(roots).__name__}")
        if name in roots and roots[name]:
            return Path(str(roots[name])).expanduser()
    return declared_root(name)


def _where(name: str) -> str:
    """``file: datasets.<name>.root`` of a declared root, for error messages."""
    from harness.data.registry import DATASETS

    return f"{DATASETS.get(name).source}: datasets.{name}.root"


def declared_root(name: str) -> Path | None:
    from harness.data.registry import DATASETS

    root = DATASETS.get(name).root if name in DATASETS else None
    if root is None:
        return None
    if root.startswith("$"):
        var = root.strip("${}")
        if not os.environ.get(var):
            raise DataRootError(f"{_where(name)}: environment variable {var} is not set (got {root!r})")
        return Path(os.environ[var]).expanduser()
    return Path(root)


def on_disk(path: Path, limit: int = 8) -> str:
    """What is there: the nearest existing folder and a few of its entries (for error messages)."""
    folder = path
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return f"{folder} holds: {', '.join(names[:limit]) or 'nothing'}{more}"


def require_root(name: str, expected: str) -> Path:
    root = configured_root(name)
    if root is None:
        raise DataRootError(
            f"dataset {name!r} has no root: set {env_var_for(name)}=/path/to/{name} or add '{name}: /path' to a "
            f"data-roots file ($HARNESS_DATA_ROOTS, ./data_roots.yaml or ~/.config/harness/data_roots.yaml); "
            f"expected layout: {expected}"
        )
    if root.exists() and not root.is_dir():
        raise DataRootError(f"dataset {name!r}: root {root} is a file, not a folder (expected layout: {expected})")
    if not root.is_dir():
        from harness.data.registry import DATASETS

        where = _where(name) if name in DATASETS and DATASETS.get(name).root else f"dataset {name!r}"
        raise DataRootError(f"{where}: root {root} does not exist (expected layout: {expected}); {on_disk(root)}")
    return root
