"""Calibrate the tiny scale: which base learning rate, how many pre-training updates and how long a fine-tune make
the tiny runs measure what pre-training learned, measured over seeds against random init.

Every run goes through the harness's own study machinery (a study file per sweep point, ``make_plan``,
``launch`` with the local executor, ``collect``), so results are cached by job identity and shared between
rungs and re-runs. The sweep is successive halving, sized for a shared 2-core machine:

0. plateau: random init fine-tuned for several lengths over the seeds; the fine-tune length is the shortest
   whose mean top-1 is within ``PLATEAU_POINTS`` of the longest one's (the curve is written out);
1. learning rate: per method, ``blr`` x {1/3, 1, 3} around its declared base, one seed, the shorter
   pre-training, judged by k-NN (cheap, frozen encoder); the best one goes on;
2. updates: per method, the chosen ``blr`` at the shorter and the longer pre-training over all seeds, with
   fine-tuning (at the plateau length), k-NN and the linear probe, next to random init with the same tasks.

Writes the raw rows (JSON, ``benchmarks/results/tiny_calibration.json``) and the tables with the chosen
settings and the per-method "beats random init" verdicts (markdown, ``docs/calibration.md`` by default:
``--doc``). Usage::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/tiny_calibration.py --seeds 3 --max-parallel 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.stats import K_SE, Sample, standard_error  # noqa: E402

DATASET = "synthetic-objects"
SSL = ["beit", "splitmask", "dino", "mae"]
PLATEAU_POINTS = 1.0
LR_FACTORS = (1 / 3, 1.0, 3.0)


@dataclass(frozen=True)
class Point:
    """One sweep point: a method (``none``: random init) at a base lr factor and a pre-training length."""

    rung: str
    method: str
    blr: float | None
    epochs: int
    ft_epochs: int
    extra: tuple[tuple[str, Any], ...] = ()  # further method parameters of the point (rung 1b)


def study_params(study: str) -> dict[str, dict[str, Any]]:
    """The tiny method overrides of a study file: the calibration measures the methods as that study runs them."""
    from harness.spec import load_study

    return load_study(study, "tiny").scale.pretrain.method_params


def study_file(folder: Path, name: str, model: str, point: Point, seeds: list[int], tasks: list[str],
               base: dict[str, dict[str, Any]]) -> Path:
    params = {point.method: {**base.get(point.method, {}), **({} if point.blr is None else {"blr": point.blr}),
                             **dict(point.extra)}}
    params = {m: p for m, p in params.items() if p}
    downstream = []
    for task in tasks:
        task_params = {"epochs": point.ft_epochs} if task == "finetune" else {}
        downstream.append({"task": task, "dataset": DATASET, "params": task_params})
    scale = {"model": model, "device": "cpu",
             "pretrain": {"methods": [point.method], "datasets": [DATASET], "fractions": [1.0],
                          "epochs": [point.epochs], "schedule": "fixed-epochs", "seeds": seeds, "subset_seed": 0,
                          "method_params": params},
             "downstream": downstream,
             "resources": {"pretrain": {"cpus_per_task": 1, "timeout_min": 60},
                           "downstream": {"cpus_per_task": 1, "timeout_min": 60}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny-calibration", "scales": {"tiny": scale}}, sort_keys=False))
    return path


def run_points(points: list[tuple[Point, list[int], list[str]]], model: str, root: Path, max_parallel: int,
               base: dict[str, dict[str, Any]]) -> list[dict]:
    """Plan every point, launch all their jobs at once (pre-training first), return one row per metric value."""
    from harness.collect import collect_frame
    from harness.launch import launch
    from harness.plan import Plan, make_plan
    from harness.spec import load_study

    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        plans = [(p, make_plan(load_study(study_file(Path(tmp), f"point{i}", model, p, seeds, tasks, base))))
                 for i, (p, seeds, tasks) in enumerate(points)]
    jobs: dict[str, Any] = {}
    for _, plan in plans:
        jobs.update(plan.by_id())
    merged = Plan(plans[0][1].study, [j for j in jobs.values() if j.stage == "pretrain"] +
                  [j for j in jobs.values() if j.stage == "downstream"])
    t0, cpu0 = time.time(), _children_cpu_s()
    report = launch(merged, executor="local", results_root=root, max_parallel=max_parallel)
    # CPU seconds of the jobs run: on a shared machine their wall time says little, this is what they cost
    cpu = _children_cpu_s() - cpu0
    print(f"  {len(report.submitted)} jobs run, {len(report.skipped_done)} reused, {time.time() - t0:.0f} s wall, "
          f"{cpu:.0f} CPU s", flush=True)
    if report.failed:
        raise RuntimeError(f"calibration jobs failed: {report.failed} (see {root / merged.study.name})")
    frame = collect_frame(root / merged.study.name, only=set(jobs))
    rows = []
    for point, plan in plans:
        ids = {j.id for j in plan.jobs}
        for r in frame[frame["job_id"].isin(ids)].to_dict("records"):
            rows.append({**asdict(point), "seed": int(r["seed"]), "stage": r["stage"], "task": r["task"],
                         "metric": r["metric"], "split": r["split"], "value": float(r["value"]),
                         "updates": int(r["updates"]) if r["updates"] == r["updates"] else None,
                         "wall_time_s": float(r["wall_time_s"]), "job_id": r["job_id"],
                         "launch_cpu_s": round(cpu, 1), "launch_jobs_run": len(report.submitted)})
    return rows


def _children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sample(rows: list[dict], **where) -> Sample:
    values = [r["value"] for r in rows if all(r.get(k) == v for k, v in where.items())]
    return Sample(tuple(values))


def fmt(s: Sample) -> str:
    if s.n == 0:
        return "-"
    return f"{s.mean:.1f} ± {math.sqrt(s.var_of_mean):.1f}" if s.n > 1 else f"{s.mean:.1f}"


def verdict(a: Sample, b: Sample) -> str:
    if a.n < 2 or b.n < 2:
        return "not enough seeds"
    d, se = a.mean - b.mean, standard_error(a, b)
    word = "yes" if d > K_SE * se else ("no (worse)" if d < -K_SE * se else "no (within noise)")
    return f"{word}: {d:+.1f} (2 SE {K_SE * se:.1f})"


def grid_extras(method: str, grid: list[str]) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the ``--grid`` values of ``method``'s parameters (one empty combination if none)."""
    from itertools import product

    axes = [[(name, v) for v in values] for m, name, values in map(parse_sweep, grid) if m == method]
    return [tuple(combo) for combo in product(*axes)]


def parse_sweep(text: str) -> tuple[str, str, list[Any]]:
    """``dino.momentum_teacher=0.9,0.99`` -> ("dino", "momentum_teacher", [0.9, 0.99]) (values read as YAML)."""
    key, _, values = text.partition("=")
    method, _, name = key.partition(".")
    if not (method and name and values):
        raise SystemExit(f"--sweep {text!r}: expected METHOD.PARAM=V1,V2,...")
    return method, name, [yaml.safe_load(v) for v in values.split(",")]


def default_blr(method: str) -> float:
    from harness.methods import METHODS

    return float(METHODS.get(method).resolved_params("tiny")["blr"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit-tiny-16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=["supervised", *SSL])
    parser.add_argument("--epochs", type=int, nargs="+", default=[6, 12], help="pre-training lengths, shortest first")
    parser.add_argument("--ft-epochs", type=int, nargs="*", default=[3, 10, 20, 40], help="plateau curve lengths")
    parser.add_argument("--lr-factors", type=float, nargs="*", default=list(LR_FACTORS),
                        help="multiples of each method's declared blr tried in rung 1")
    parser.add_argument("--grid", nargs="*", default=[], metavar="METHOD.PARAM=V1,V2",
                        help="rung 1: method parameters tried jointly with every lr factor")
    parser.add_argument("--lr-seeds", type=int, default=1, help="seeds of rung 1 (the first ones)")
    parser.add_argument("--sweep", nargs="*", default=[], metavar="METHOD.PARAM=V1,V2",
                        help="rung 1b: further method parameters tried at the chosen blr over all seeds (k-NN)")
    parser.add_argument("--short-ft-epochs", type=int, default=None,
                        help="rung 2 also fine-tunes this many epochs (the length a default study affords)")
    parser.add_argument("--study", default="imagenet-fractions", help="whose tiny method_params every run uses")
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path(tempfile.gettempdir()) / "harness-calibration")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/tiny_calibration.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/calibration.md")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    short = args.epochs[0]
    base = study_params(args.study)
    t_start = time.time()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    meta: dict[str, Any] = {"short_ft_epochs": args.short_ft_epochs, "commit": commit, "model": args.model, "seeds": seeds, "epochs": args.epochs,
                            "lr_factors": args.lr_factors, "methods": args.methods, "method_params": base}

    def write(rows: list[dict], done: str) -> None:  # after every rung: an interrupted sweep still leaves its tables
        meta.update(done=done, wall_s=round(time.time() - t_start))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=0) + "\n")
        table = markdown(rows, meta)
        print(table, flush=True)
        write_section(args.doc, table)

    print("rung 0: random-init fine-tune plateau", flush=True)
    plateau_points = [(Point("plateau", "none", None, short, n), seeds, ["finetune"]) for n in args.ft_epochs]
    rows = run_points(plateau_points, args.model, args.results, args.max_parallel, base)
    curve = {n: sample(rows, rung="plateau", ft_epochs=n, metric="top1") for n in args.ft_epochs}
    best = max(s.mean for s in curve.values())
    meta["ft_curve"] = {n: list(s.values) for n, s in curve.items()}
    meta["ft_epochs"] = ft = min(n for n, s in curve.items() if s.mean >= best - PLATEAU_POINTS)
    write(rows, "plateau")

    lr_seeds = seeds[:args.lr_seeds]
    print(f"rung 1: base learning rate x {args.grid or 'nothing else'} (seeds {lr_seeds}, {short} epochs, k-NN); "
          f"fine-tune length {ft} epochs", flush=True)
    lr_points = [(Point("lr", m, default_blr(m) * f, short, ft, extra), lr_seeds, ["knn"]) for m in args.methods
                 for f in args.lr_factors for extra in grid_extras(m, args.grid)]
    rows += run_points(lr_points, args.model, args.results, args.max_parallel, base)
    chosen_blr, chosen_extra = {}, {}
    for m in args.methods:
        score = {(p.blr, p.extra): sample(rows, rung="lr", method=m, blr=p.blr, extra=p.extra, metric="top1").mean
                 for p, _, _ in lr_points if p.method == m}
        chosen_blr[m], chosen_extra[m] = max(score, key=score.get)
    meta["chosen_blr"] = chosen_blr
    meta["chosen_extra"] = {m: dict(e) for m, e in chosen_extra.items() if e}
    write(rows, "lr")

    for method, name, values in map(parse_sweep, args.sweep):
        print(f"rung 1b: {method} {name} in {values} (all seeds, {short} epochs, k-NN)", flush=True)
        points = [(Point("param", method, chosen_blr[method], short, ft, chosen_extra[method] + ((name, v),)),
                   seeds, ["knn"]) for v in values]
        rows += run_points(points, args.model, args.results, args.max_parallel, base)
        by_value = {p.extra: sample(rows, rung="param", method=method, extra=p.extra, metric="top1").mean
                    for p, _, _ in points}
        chosen_extra[method] = max(by_value, key=by_value.get)
    meta["chosen_extra"] = {m: dict(e) for m, e in chosen_extra.items() if e}
    write(rows, "param")

    tasks = ["finetune", "knn", "linear_probe"]

    def final_points(method: str, blr: float | None, epochs: int, extra: tuple) -> list:
        points = [(Point("final", method, blr, epochs, ft, extra), seeds, tasks)]
        if args.short_ft_epochs:  # the same pre-training, also fine-tuned as briefly as a default study does
            points.append((Point("final-short", method, blr, epochs, args.short_ft_epochs, extra), seeds,
                           ["finetune"]))
        return points

    rows += run_points(final_points("none", None, short, ()), args.model, args.results, args.max_parallel, base)
    for epochs in args.epochs:
        for m in args.methods:  # one method at a time, its table row written as soon as it is measured
            print(f"rung 2: {m}, {epochs} pre-training epochs over {len(seeds)} seeds", flush=True)
            rows += run_points(final_points(m, chosen_blr[m], epochs, chosen_extra[m]), args.model, args.results,
                               args.max_parallel, base)
            write(rows, f"final: {m} at {epochs} epochs")
    return 0


BEGIN, END = "<!-- tiny_calibration.py: begin -->", "<!-- tiny_calibration.py: end -->"


def write_section(doc: Path, table: str) -> None:
    """Replace the generated section of ``doc`` (between the markers), keeping the hand-written text around it."""
    text = doc.read_text() if doc.exists() else f"# Tiny-scale calibration\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    doc.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")


def markdown(rows: list[dict], meta: dict) -> str:
    curve = {int(n): Sample(tuple(v)) for n, v in meta["ft_curve"].items()}
    out = [f"Measured at commit {meta['commit']}, `{meta['model']}`, seeds {meta['seeds']}, {meta['wall_s']} s wall "
           f"(rungs done through: {meta['done']}).",
           "", "Random-init fine-tune top-1 by length (mean ± SE over seeds):", "",
           "| fine-tune epochs | " + " | ".join(str(n) for n in curve) + " |",
           "|---|" + "---:|" * len(curve), "| top-1 | " + " | ".join(fmt(s) for s in curve.values()) + " |", "",
           f"Chosen fine-tune length: {meta['ft_epochs']} epochs.", "",
           "Base learning rate, jointly with the parameters of `--grid` (k-NN top-1 after the shorter pre-training, "
           "mean ± SE over the seeds of this rung):", "",
           "| method | blr | parameters | k-NN |", "|---|---:|---|---:|"]
    lr_rows = [r for r in rows if r["rung"] == "lr" and r["metric"] == "top1"]
    for method, blr, extra in dict.fromkeys((r["method"], r["blr"], tuple(map(tuple, r["extra"]))) for r in lr_rows):
        chosen = (meta.get("chosen_blr", {}).get(method) == blr
                  and meta.get("chosen_extra", {}).get(method, {}) == dict(extra))
        text = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra)
        out.append(f"| {method} | {blr:.2g}{' (chosen)' if chosen else ''} | {text} | "
                   f"{fmt(sample(lr_rows, method=method, blr=blr, extra=extra))} |")
    param_rows = [r for r in rows if r["rung"] == "param" and r["metric"] == "top1"]
    if param_rows:
        out += ["", "Further parameters at the chosen blr (k-NN top-1 after the shorter pre-training, mean ± SE "
                "over seeds):", "", "| method | parameters | k-NN |", "|---|---|---:|"]
        for method, extra in dict.fromkeys((r["method"], tuple(map(tuple, r["extra"]))) for r in param_rows):
            chosen = " (chosen)" if meta.get("chosen_extra", {}).get(method) == dict(extra) else ""
            text = ", ".join(f"{k} {v}" for k, v in extra)
            out.append(f"| {method} | {text}{chosen} | {fmt(sample(param_rows, method=method, extra=extra))} |")
    out += ["", "With the chosen blr, over seeds (mean ± SE); \"beats random init\" = mean difference beyond "
            f"{K_SE:g} standard errors:", "",
            f"Fine-tune: {meta['ft_epochs']} epochs (the length chosen above)"
            + (f"; short: {meta['short_ft_epochs']} epochs (a default study's length)." if meta.get("short_ft_epochs")
               else "."), "",
            "| method | pre-train epochs | updates | fine-tune | short fine-tune | k-NN | linear probe "
            "| beats RI: fine-tune | short fine-tune | k-NN |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    names = ("finetune", "short", "knn", "linear_probe")

    def samples(method: str, **where) -> dict[str, Sample]:
        found = {t: sample(rows, rung="final", method=method, task=t, metric="top1", **where) for t in names
                 if t != "short"}
        return {**found, "short": sample(rows, rung="final-short", method=method, task="finetune", metric="top1",
                                         **where)}

    base = samples("none")
    out.append(f"| random init | - | 0 | {' | '.join(fmt(base[t]) for t in names)} | | | |")
    for m in meta["methods"]:
        for e in meta["epochs"]:
            s = samples(m, epochs=e)
            upd = next((r["updates"] for r in rows if r["rung"] == "final" and r["method"] == m and r["epochs"] == e
                        and r["stage"] == "pretrain"), "")
            out.append(f"| {m} | {e} | {upd} | {' | '.join(fmt(s[t]) for t in names)} | "
                       f"{' | '.join(verdict(s[t], base[t]) for t in ('finetune', 'short', 'knn'))} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
