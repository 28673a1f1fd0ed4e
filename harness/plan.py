"""Plan: a validated study -> the list of jobs to run, each with an identity, coordinates and dependencies.

A job's identity is a short hash of the canonical JSON of its resolved configuration: method/task parameters
after defaults and overrides, the method's or task's behaviour ``version``, the encoder, the data (the fraction
manifest's content hash and a synthetic set's generator version; for a downstream job the fingerprint of its
dataset), the schedule in updates, the seed, for a job on the CPU its torch thread count (bitwise results depend
on it) and, for a downstream job, its upstream job's identity. Other resources, paths, the study's name and the
scale's name are excluded, so moving a job to another cluster keeps its results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

from harness import cycles
from harness.errors import ConfigError
from harness.registry import POOL_FROM_METHOD
from harness.schedule import job_schedule, pretrain_schedule
from harness.spec import Resources, Study

HASH_LEN = 8


@dataclass(frozen=True)
class Job:
    id: str
    stage: str  # "pretrain" | "downstream"
    config: dict[str, Any]  # what the identity hashes
    coords: dict[str, Any]  # grid coordinates: method, pretrain_dataset, fraction, epochs, seed, task, task_dataset
    resources: Resources
    upstream: str | None = None
    unavailable: str = ""  # why the job cannot run with this version of the harness ("" when it can)
    schedule: dict[str, Any] | None = None  # harness.schedule.Schedule as a dict; derived, not hashed

    @property
    def updates(self) -> int | None:
        return self.schedule["total_updates"] if self.schedule else None

    @property
    def cell(self) -> tuple:
        """The study cell (method x dataset x fraction x epochs) the job belongs to."""
        c = self.coords
        return (c["method"], c["pretrain_dataset"], c["fraction"], c["epochs"])


@dataclass
class Plan:
    study: Study
    jobs: list[Job] = field(default_factory=list)

    def by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}

    @property
    def pretrain(self) -> list[Job]:
        return [j for j in self.jobs if j.stage == "pretrain"]

    @property
    def downstream(self) -> list[Job]:
        return [j for j in self.jobs if j.stage == "downstream"]


# one encoder for every call: json.dumps with options builds a new encoder each time
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(data: Any) -> str:
    return _CANONICAL.encode(data)


def identity(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:HASH_LEN]


def _fraction_tag(f: float | None) -> str:
    return "" if f is None else f"-f{f:.2f}"


def _pretrain_prefix(coords: dict, alias: str | None) -> str:
    if coords["pretrain_dataset"] is None:
        return f"{coords['method']}-s{coords['seed']}"
    return f"{coords['method']}-{alias}{_fraction_tag(coords['fraction'])}-e{coords['epochs']}-s{coords['seed']}"


def _loader_marker(params: dict[str, Any]) -> dict[str, str]:
    """Loaders with workers seed every item's augmentation from its place in the run (harness/engine.py)."""
    return {"loader": "per-item-seeds"} if params.get("num_workers", 0) else {}


def pretrain_resources(study: Study, method: str, cls, params: dict[str, Any]) -> Resources:
    """The stage's resources with the method's overrides; a method that does not train (random init) asks for
    one task and no GPU. Accumulation only for methods whose update it keeps exact."""
    res = study.scale.resources.for_job("pretrain", method)
    if cls is not None and not cls.uses_data:
        return res.model_copy(update={"nodes": 1, "gpus_per_node": 0, "tasks_per_node": 1, "grad_accumulation": 1})
    if res.grad_accumulation > 1 and cls is not None and not _accumulation_exact(method, params):
        key = ("resources.methods." + method if method in study.scale.resources.methods else "resources") + ".pretrain"
        raise ConfigError(study.source, f"{key}.grad_accumulation", f"method {method!r} couples the images of a batch "
                          "(batch statistics, negatives or mixing) in a way micro-batches would change (see "
                          "docs/slurm.md); use more GPUs or grad_accumulation: 1")
    return res


def _accumulation_exact(method: str, params: dict[str, Any]) -> bool:
    from harness.methods import METHODS  # imports torch: only for a study that accumulates

    return METHODS.get(method).accumulation_exact(params)


def _method_class(name: str):
    from harness.declarations import methods

    return methods().get(name) if name in methods() else None


def pretrain_jobs(study: Study) -> list[Job]:
    from harness.data import dataset_info, dataset_version, get_index, manifest_summary
    from harness.models.encoders import encoder_config

    s = study.scale
    grid = s.pretrain
    model = encoder_config(s.model).to_dict()
    jobs: dict[str, Job] = {}

    @cache
    def manifest_for(dataset: str, fraction: float) -> tuple[str, int]:
        """(content hash, images) of a subset's manifest: computed once, shared by every method and seed."""
        return manifest_summary(dataset, "train", fraction, grid.subset_seed)

    @cache
    def reference_size(dataset: str) -> int:
        return len(get_index(grid.updates_reference or dataset, "train"))

    for method in grid.methods:
        cls = _method_class(method)
        overrides = grid.method_params.get(method, {})
        try:
            params = cls.resolved_params(study.scale_name, overrides) if cls else dict(overrides)
        except (KeyError, ValueError) as e:
            raise ConfigError(study.source, f"pretrain.method_params.{method}", str(e.args[0])) from None
        unavailable = "" if cls else f"method {method!r} is not implemented in this version of the harness"
        uses_data = cls.uses_data if cls else True
        resources = pretrain_resources(study, method, cls, params)
        datasets = grid.method_datasets.get(method, grid.datasets) if uses_data else [None]
        fractions, epochs_list = (grid.fractions, grid.epochs) if uses_data else ([None], [None])
        for dataset, fraction, epochs, seed in product(datasets, fractions, epochs_list, grid.seeds):
            config: dict[str, Any] = {"stage": "pretrain", "method": method, "params": params,
                                      "version": cls.version if cls else None, "model": model, "seed": seed,
                                      **_loader_marker(params)}
            alias = None
            if dataset is not None:
                info = dataset_info(dataset)
                alias = info.alias
                if cls and cls.uses_labels and info.kind != "classification":
                    raise ConfigError(study.source, "pretrain.datasets", f"method {method!r} needs image "
                                      f"labels, which dataset {dataset!r} ({info.kind}) does not have")
                manifest_hash, images = manifest_for(dataset, fraction)
                config["data"] = {"dataset": dataset, "version": dataset_version(dataset), "split": "train",
                                  "fraction": fraction, "subset_seed": grid.subset_seed,
                                  "manifest": manifest_hash, "images": images}
                config["schedule"] = pretrain_schedule(reference_size(dataset), images, params.get("batch_size", 64),
                                                       epochs, grid.schedule, params)
            if s.device == "cpu":  # bitwise results depend on the torch thread count; see harness.job
                config["threads"] = resources.cpus_per_task
            coords = {"method": method, "pretrain_dataset": dataset, "fraction": fraction,
                      "epochs": epochs, "seed": seed, "task": None, "task_dataset": None}
            job_id = f"pre-{_pretrain_prefix(coords, alias)}-{identity(config)}"
            schedule = job_schedule(config)
            jobs[job_id] = Job(job_id, "pretrain", config, coords, resources, unavailable=unavailable,
                               schedule=schedule.to_dict() if schedule else None)
    return list(jobs.values())


def applies(entry, pre: Job) -> bool:
    """Whether a downstream entry's method / pre-training-data filters keep this upstream job."""
    method, data = pre.coords["method"], pre.coords["pretrain_dataset"]
    if entry.methods is not None and method not in entry.methods:
        return False
    return entry.pretrain_datasets is None or data is None or data in entry.pretrain_datasets


def downstream_jobs(study: Study, upstream: list[Job]) -> list[Job]:
    from harness.data import check_dataset, dataset_fingerprint, dataset_info
    from harness.declarations import tasks

    s = study.scale
    jobs = []
    fingerprints, train_sizes = {}, {}
    for dataset in dict.fromkeys(e.dataset for e in s.downstream):
        sizes = check_dataset(dataset)  # a missing or malformed root fails now, at plan time, not in a worker
        fingerprints[dataset] = dataset_fingerprint(dataset)
        train_sizes[dataset] = sizes.get("train")
    schedules: dict[tuple[int, str], dict | None] = {}  # one per downstream entry and dataset

    @cache
    def entry_params(i: int, method: str) -> dict[str, Any]:
        """An entry's resolved parameters for an upstream method: one dict shared by all its jobs."""
        entry = s.downstream[i]
        try:
            params = tasks().get(entry.task).resolved_params(study.scale_name, entry.params)
        except (KeyError, ValueError) as e:
            raise ConfigError(study.source, f"downstream[{i}].params", str(e.args[0])) from None
        if params.get("pool") == POOL_FROM_METHOD and (method_cls := _method_class(method)):
            params = {**params, "pool": method_cls.pooling}  # how the upstream method's encoder is read
        return params

    for pre in upstream:
        for i, entry in enumerate(s.downstream):
            if not applies(entry, pre):
                continue
            cls = tasks().get(entry.task)
            params = entry_params(i, pre.coords["method"])
            info = dataset_info(entry.dataset)
            if info.kind != cls.dataset_kind:
                raise ConfigError(study.source, f"downstream[{i}].dataset", f"task {entry.task!r} needs a "
                                  f"{cls.dataset_kind} dataset, but {entry.dataset!r} is a {info.kind} dataset")
            config = {"stage": "downstream", "task": entry.task, "params": params, "version": cls.version,
                      "dataset": entry.dataset,
                      "dataset_fingerprint": fingerprints[entry.dataset], "model": pre.config["model"],
                      "upstream": pre.id, "seed": pre.coords["seed"], **_loader_marker(params)}
            resources = s.resources.for_job("downstream", pre.coords["method"])
            if s.device == "cpu":
                config["threads"] = resources.cpus_per_task
            coords = {**pre.coords, "task": entry.task, "task_dataset": entry.dataset}
            pre_alias = dataset_info(pre.coords["pretrain_dataset"]).alias if pre.coords["pretrain_dataset"] else None
            job_id = f"{entry.task}.{info.alias}-{_pretrain_prefix(pre.coords, pre_alias)}-{identity(config)}"
            if resources.grad_accumulation > 1:
                raise ConfigError(study.source, "resources.downstream.grad_accumulation",
                                  "downstream tasks do not accumulate gradients; use grad_accumulation: 1")
            if (i, entry.dataset) not in schedules:
                sched = job_schedule(config, train_sizes[entry.dataset])
                schedules[(i, entry.dataset)] = sched.to_dict() if sched else None
            jobs.append(Job(job_id, "downstream", config, coords, resources, upstream=pre.id,
                            unavailable=pre.unavailable, schedule=schedules[(i, entry.dataset)]))
    return jobs


def resolved_params_lines(plan: Plan) -> list[str]:
    """One line per distinct resolved parameter set (a method's, or a task's on a dataset), as the jobs carry
    them into their identities: what `harness plan` shows so that a recipe can be read before it runs."""
    seen: dict[str, list[str]] = {}
    for job in plan.jobs:
        c = job.config
        who = f"method {c['method']}" if job.stage == "pretrain" else f"task {c['task']} on {c['dataset']}"
        text = " ".join(f"{k}={v}" for k, v in sorted(c["params"].items()))
        if text not in seen.setdefault(who, []):
            seen[who].append(text)
    return [f"  {who}: {text}" for who, texts in seen.items() for text in texts]


def make_plan(study: Study) -> Plan:
    pre = pretrain_jobs(study)
    return Plan(study, pre + downstream_jobs(study, pre))


# ---- the plan as launched: results/<study>/plan.json ------------------------------------------------------------

PLAN_FILE = "plan.json"


@dataclass
class StoredPlan:
    """The plan a study was last launched with, read back without the study's data (or torch)."""

    study: str
    scale: str
    seeds: list[int]
    source: str
    source_sha256: str
    jobs: list[Job]


def _sha256(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


class _Shared:
    """Values that many jobs share (parameters, model, data, schedule, resources), stored once in plan.json and
    referenced by position: a 50,000-job plan stays a few MB, and reading it back decodes each value once."""

    KEYS = ("params", "model", "data", "schedule")

    def __init__(self, values: list | None = None):
        self.values = values if values is not None else []
        self._positions: dict[str, int] = {}

    def ref(self, value: Any, always: bool = False) -> Any:
        """``{"$shared": position}`` of a dict (the position itself when ``always``, for any value)."""
        if not always and not isinstance(value, dict):
            return value
        key = canonical_json(value)
        if key not in self._positions:
            self._positions[key] = len(self.values)
            self.values.append(value)
        return self._positions[key] if always else {"$shared": self._positions[key]}

    def get(self, value: Any) -> Any:
        return self.values[value["$shared"]] if isinstance(value, dict) and "$shared" in value else value

    def pack(self, config: dict) -> dict:
        return {k: self.ref(v) if k in self.KEYS else v for k, v in config.items()}

    def unpack(self, config: dict) -> dict:
        return {k: self.get(v) if k in self.KEYS else v for k, v in config.items()}


LAYOUT = 2  # jobs as rows of values, keys stored once; plan.json without "layout" keeps a dict per job


class _Rows:
    """Jobs as lists in plan.json: each distinct set of keys (of a config, of coordinates) is stored once and a job
    names it by position, and the values of ``_Shared.KEYS``, resources and schedule are positions in ``shared``:
    a 50,000-job plan is about half the text of one dict per job, and decodes faster."""

    def __init__(self, shared: _Shared, keysets: list | None = None):
        self.shared, self.keysets = shared, keysets if keysets is not None else []
        self._positions: dict[tuple, int] = {}

    def keyset(self, keys: tuple) -> int:
        if keys not in self._positions:
            self._positions[keys] = len(self.keysets)
            self.keysets.append(list(keys))
        return self._positions[keys]

    def value(self, value: Any) -> int:
        return self.shared.ref(value, always=True)

    def row(self, job: Job) -> list:
        config = [self.value(v) if k in _Shared.KEYS else v for k, v in job.config.items()]
        return [job.id, job.stage, self.keyset(tuple(job.config)), config, self.keyset(tuple(job.coords)),
                list(job.coords.values()), self.value(job.resources.model_dump()), job.upstream, job.unavailable,
                self.value(job.schedule)]

    def config(self, keys: int, values: list) -> dict:
        names, shared = self.keysets[keys], self.shared.values
        return {k: shared[v] if k in _Shared.KEYS else v for k, v in zip(names, values)}

    def coords(self, keys: int, values: list) -> dict:
        return dict(zip(self.keysets[keys], values))


def save_plan(plan: Plan, study_dir: Path) -> Path:
    from harness.results import atomic_write_text

    shared = _Shared()
    rows = _Rows(shared)
    jobs = [rows.row(job) for job in plan.jobs]
    doc = {"layout": LAYOUT, "study": plan.study.name, "scale": plan.study.scale_name,
           "seeds": list(plan.study.scale.pretrain.seeds), "source": plan.study.source,
           "source_sha256": _sha256(plan.study.source), "shared": shared.values, "keys": rows.keysets, "jobs": jobs}
    path = study_dir / PLAN_FILE
    atomic_write_text(path, json.dumps(doc, separators=(",", ":")))
    return path


def load_plan(study_dir: Path) -> StoredPlan | None:
    """The stored plan, or None when the study was never launched (or the file is unreadable)."""
    with cycles.paused():  # decoded JSON holds no cycle
        return _load_plan(study_dir)


def _load_plan(study_dir: Path) -> StoredPlan | None:
    try:
        doc = json.loads((study_dir / PLAN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    try:
        return _stored_plan(doc)
    except (KeyError, TypeError, IndexError, ValueError):  # another layout: plan afresh
        return None


def _stored_plan(doc: dict) -> StoredPlan:
    if doc.get("layout") == LAYOUT:
        return _stored_rows(doc)
    shared = _Shared(doc["shared"])
    resources: dict[int, Resources] = {}
    jobs = []
    for j in doc["jobs"]:
        ref = j["resources"]["$shared"]
        if ref not in resources:
            resources[ref] = Resources.model_validate(shared.get(j["resources"]))
        jobs.append(Job(j["id"], j["stage"], shared.unpack(j["config"]), j["coords"], resources[ref], j["upstream"],
                        j["unavailable"], shared.get(j["schedule"])))
    return StoredPlan(doc["study"], doc["scale"], doc["seeds"], doc["source"], doc["source_sha256"], jobs)


def _stored_rows(doc: dict) -> StoredPlan:
    rows = _Rows(_Shared(doc["shared"]), doc["keys"])
    shared = rows.shared.values
    resources: dict[int, Resources] = {}
    jobs = []
    for job_id, stage, config_keys, config, coord_keys, coords, res, upstream, unavailable, schedule in doc["jobs"]:
        if res not in resources:
            resources[res] = Resources.model_validate(shared[res])
        jobs.append(Job(job_id, stage, rows.config(config_keys, config), rows.coords(coord_keys, coords),
                        resources[res], upstream, unavailable, shared[schedule]))
    return StoredPlan(doc["study"], doc["scale"], doc["seeds"], doc["source"], doc["source_sha256"], jobs)


def source_changed(stored: StoredPlan, source: str | Path) -> bool:
    return _sha256(source) != stored.source_sha256


class PlannedJob(NamedTuple):
    """What a report needs of a stored job: no resources, schedule or Job objects are built."""

    stage: str
    coords: dict[str, Any]
    params: dict[str, Any]


def load_planned_jobs(study_dir: Path) -> dict[str, PlannedJob]:
    """Each job of the stored plan by id (empty when none is stored or its layout is another); jobs sharing
    parameters share one dict, so comparing them by identity first is cheap."""
    with cycles.paused():  # decoded JSON holds no cycle
        return _load_planned_jobs(study_dir)


def _load_planned_jobs(study_dir: Path) -> dict[str, PlannedJob]:
    try:
        doc = json.loads((study_dir / PLAN_FILE).read_text())
        if doc.get("layout") == LAYOUT:
            return _planned_rows(doc)
        shared = _Shared(doc["shared"])
        return {j["id"]: PlannedJob(j["stage"], j["coords"], shared.get(j["config"].get("params")) or {})
                for j in doc["jobs"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def _planned_rows(doc: dict) -> dict[str, PlannedJob]:
    keysets, shared = doc["keys"], doc["shared"]
    params_at = [keys.index("params") if "params" in keys else None for keys in keysets]
    planned = {}
    for row in doc["jobs"]:  # id, stage, config keys, config, coordinate keys, coordinates, ...
        at = params_at[row[2]]
        planned[row[0]] = PlannedJob(row[1], dict(zip(keysets[row[4]], row[5])),
                                     (shared[row[3][at]] if at is not None else None) or {})
    return planned
