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
from typing import Any

from harness.errors import ConfigError
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


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def identity(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:HASH_LEN]


def _fraction_tag(f: float | None) -> str:
    return "" if f is None else f"-f{f:.2f}"


def _pretrain_prefix(coords: dict, alias: str | None) -> str:
    if coords["pretrain_dataset"] is None:
        return f"{coords['method']}-s{coords['seed']}"
    return f"{coords['method']}-{alias}{_fraction_tag(coords['fraction'])}-e{coords['epochs']}-s{coords['seed']}"


def _schedule(n_full: int, n_subset: int, batch_size: int, epochs: int, mode: str, warmup_epochs: float) -> dict:
    from harness.engine import updates_per_epoch

    reference = n_full if mode == "fixed-updates" else n_subset
    per_epoch = updates_per_epoch(reference, batch_size)
    total = epochs * per_epoch
    return {
        "mode": mode, "epochs": epochs, "total_updates": total,
        "warmup_updates": int(round(warmup_epochs * per_epoch)),
        "subset_epochs": round(total / updates_per_epoch(n_subset, batch_size), 2),
    }


def _method_class(name: str):
    from harness.methods import METHODS

    return METHODS.get(name) if name in METHODS else None


def pretrain_jobs(study: Study) -> list[Job]:
    from harness.data import dataset_info, dataset_version, get_index, get_manifest
    from harness.models.vit import encoder_config

    s = study.scale
    grid = s.pretrain
    model = encoder_config(s.model).to_dict()
    jobs: dict[str, Job] = {}

    @cache
    def manifest_for(dataset: str, fraction: float):  # one manifest per subset, shared by every method and seed
        return get_manifest(dataset, "train", fraction, grid.subset_seed)

    for method in grid.methods:
        cls = _method_class(method)
        overrides = grid.method_params.get(method, {})
        try:
            params = cls.resolved_params(study.scale_name, overrides) if cls else dict(overrides)
        except KeyError as e:
            raise ConfigError(study.source, f"pretrain.method_params.{method}", str(e.args[0])) from None
        unavailable = "" if cls else f"method {method!r} is not implemented in this version of the harness"
        uses_data = cls.uses_data if cls else True
        datasets = grid.method_datasets.get(method, grid.datasets) if uses_data else [None]
        fractions, epochs_list = (grid.fractions, grid.epochs) if uses_data else ([None], [None])
        for dataset, fraction, epochs, seed in product(datasets, fractions, epochs_list, grid.seeds):
            config: dict[str, Any] = {"stage": "pretrain", "method": method, "params": params,
                                      "version": cls.version if cls else None, "model": model, "seed": seed}
            alias = None
            if dataset is not None:
                info = dataset_info(dataset)
                alias = info.alias
                if cls and cls.uses_labels and info.kind != "classification":
                    raise ConfigError(study.source, "pretrain.datasets", f"method {method!r} needs image "
                                      f"labels, which dataset {dataset!r} ({info.kind}) does not have")
                manifest = manifest_for(dataset, fraction)
                config["data"] = {"dataset": dataset, "version": dataset_version(dataset), "split": "train",
                                  "fraction": fraction, "subset_seed": grid.subset_seed,
                                  "manifest": manifest.content_hash, "images": len(manifest)}
                reference = get_index(grid.updates_reference or dataset, "train")
                config["schedule"] = _schedule(len(reference), len(manifest), params.get("batch_size", 64),
                                               epochs, grid.schedule, params.get("warmup_epochs", 0))
            if s.device == "cpu":  # bitwise results depend on the torch thread count; see harness.job
                config["threads"] = s.resources.pretrain.cpus_per_task
            coords = {"method": method, "pretrain_dataset": dataset, "fraction": fraction,
                      "epochs": epochs, "seed": seed, "task": None, "task_dataset": None}
            job_id = f"pre-{_pretrain_prefix(coords, alias)}-{identity(config)}"
            jobs[job_id] = Job(job_id, "pretrain", config, coords, s.resources.pretrain, unavailable=unavailable)
    return list(jobs.values())


def applies(entry, pre: Job) -> bool:
    """Whether a downstream entry's method / pre-training-data filters keep this upstream job."""
    method, data = pre.coords["method"], pre.coords["pretrain_dataset"]
    if entry.methods is not None and method not in entry.methods:
        return False
    return entry.pretrain_datasets is None or data is None or data in entry.pretrain_datasets


def downstream_jobs(study: Study, upstream: list[Job]) -> list[Job]:
    from harness.data import check_dataset, dataset_fingerprint, dataset_info
    from harness.tasks import TASKS
    from harness.tasks.base import POOL_FROM_METHOD

    s = study.scale
    jobs = []
    fingerprints = {}
    for dataset in dict.fromkeys(e.dataset for e in s.downstream):
        check_dataset(dataset)  # a missing or malformed root fails now, at plan time, not in a worker
        fingerprints[dataset] = dataset_fingerprint(dataset)
    for pre in upstream:
        for i, entry in enumerate(s.downstream):
            if not applies(entry, pre):
                continue
            cls = TASKS.get(entry.task)
            try:
                params = cls.resolved_params(study.scale_name, entry.params)
            except KeyError as e:
                raise ConfigError(study.source, f"downstream[{i}].params", str(e.args[0])) from None
            if params.get("pool") == POOL_FROM_METHOD and (method_cls := _method_class(pre.coords["method"])):
                params = {**params, "pool": method_cls.pooling}  # how the upstream method's encoder is read
            info = dataset_info(entry.dataset)
            if info.kind != cls.dataset_kind:
                raise ConfigError(study.source, f"downstream[{i}].dataset", f"task {entry.task!r} needs a "
                                  f"{cls.dataset_kind} dataset, but {entry.dataset!r} is a {info.kind} dataset")
            config = {"stage": "downstream", "task": entry.task, "params": params, "version": cls.version,
                      "dataset": entry.dataset,
                      "dataset_fingerprint": fingerprints[entry.dataset], "model": pre.config["model"],
                      "upstream": pre.id, "seed": pre.coords["seed"]}
            if s.device == "cpu":
                config["threads"] = s.resources.downstream.cpus_per_task
            coords = {**pre.coords, "task": entry.task, "task_dataset": entry.dataset}
            pre_alias = dataset_info(pre.coords["pretrain_dataset"]).alias if pre.coords["pretrain_dataset"] else None
            job_id = f"{entry.task}.{info.alias}-{_pretrain_prefix(pre.coords, pre_alias)}-{identity(config)}"
            jobs.append(Job(job_id, "downstream", config, coords, s.resources.downstream, upstream=pre.id,
                            unavailable=pre.unavailable))
    return jobs


def make_plan(study: Study) -> Plan:
    pre = pretrain_jobs(study)
    return Plan(study, pre + downstream_jobs(study, pre))
