"""``harness data list | prepare NAME | show NAME``: what datasets exist, where, how big; build them ahead of time."""

from __future__ import annotations

import argparse
from pathlib import Path


def _location(name: str) -> tuple[str, Path | None]:
    """(human description of where the dataset is, its root if it exists now); never generates or lists."""
    from harness.data import dataset_info, synthetic_root
    from harness.data.roots import configured_root, env_var_for

    from harness.errors import DataRootError

    info = dataset_info(name)
    try:
        root = configured_root(name)
    except DataRootError as e:  # e.g. a declared $VAR root whose variable is not set
        return f"not configured ({e})", None
    if info.synthetic:
        root = root or synthetic_root(info)
        return (str(root) if root.exists() else f"{root} (generated on first use)"), (root if root.exists() else None)
    if root is None:
        return f"not configured (set {env_var_for(name)} or add it to data_roots.yaml)", None
    if not root.is_dir():
        return f"{root} (MISSING)", None
    return str(root), root


def _sizes(name: str, root: Path | None) -> str:
    from harness.data import dataset_info
    from harness.data.index import peek_cached_index

    if root is None:
        return "-"
    parts = []
    for split in dataset_info(name).splits:
        index = peek_cached_index(name, split, root)
        if index is None:
            return "not indexed (harness data prepare " + name + ")"
        classes = f", {len(index.classes)} classes" if index.classes else ""
        parts.append(f"{split} {len(index)}{classes}")
    return "; ".join(parts)


def cmd_list(args) -> int:
    from harness.data import DATASETS

    rows = [("name", "alias", "kind", "layout", "images", "where")]
    for name, info in DATASETS.items():
        where, root = _location(name)
        rows.append((name, info.alias, info.kind, info.layout, _sizes(name, root), where))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


def cmd_prepare(args) -> int:
    from harness.data import dataset_info, get_index, resolve_root

    info = dataset_info(args.name)
    root = resolve_root(args.name)  # generates a synthetic set (with a progress bar)
    print(f"{args.name}: root {root}")
    for split in info.splits:
        index = get_index(args.name, split, rebuild=args.reindex)
        classes = f", {len(index.classes)} classes" if index.classes else ""
        print(f"  {split}: {len(index)} images{classes} (index {index.content_hash})")
    return 0


def cmd_show(args) -> int:
    from harness.data.show import contact_sheet

    out = Path(args.out) if args.out else Path(f"{args.name}-{args.split}.png")
    print(contact_sheet(args.name, out, split=args.split, count=args.count))
    return 0


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="datasets: list, prepare (generate or index), show samples")
    sub = data.add_subparsers(dest="data_command", required=True)
    sub.add_parser("list", help="every dataset: kind, where it is (or would be), sizes if indexed").set_defaults(
        fn=cmd_list)
    p = sub.add_parser("prepare", help="generate a synthetic set or index a real one ahead of time")
    p.add_argument("name")
    p.add_argument("--reindex", action="store_true", help="list the files again even if an index is cached")
    p.set_defaults(fn=cmd_prepare)
    s = sub.add_parser("show", help="write a contact sheet PNG of samples (masks/labels overlaid)")
    s.add_argument("name")
    s.add_argument("--split", default="train")
    s.add_argument("--count", type=int, default=16)
    s.add_argument("--out", default=None, help="output PNG (default ./<name>-<split>.png)")
    s.set_defaults(fn=cmd_show)
