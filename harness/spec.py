"""Study files: typed models, scale merging and validation with errors that name file, key and value.

A study file has ``name``, ``description``, ``default_scale``, a ``common`` section and named ``scales``
(``tiny``, ``paper``, ...). The chosen scale is ``common`` deep-merged with ``scales.<name>`` (mappings merge,
lists and scalars replace). Names of methods, datasets, tasks and models are checked against the registries.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from harness import yamlfile
from harness.errors import ConfigError, HarnessError
from harness.registry import did_you_mean

# Methods the paper's protocol names; a study may list them before they are implemented, and `plan`
# reports them as unavailable instead of failing.
PAPER_METHODS = ("beit", "splitmask", "dino", "supervised", "mae", "none")


# Study and dataset names become folder names under the results root and SLURM job names: a slug keeps them
# inside the root (no "..", "/", "" or ".") and out of any shell line (no spaces, newlines or quotes).
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise ValueError("must be a slug: letters, digits, '.', '_' or '-', starting with a letter or digit, "
                         "at most 64 characters (it names a folder under the results root)")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Seed = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """What one job asks the scheduler for; never part of a job's identity."""

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    tasks_per_node: int = Field(1, ge=1)
    cpus_per_task: int = Field(1, ge=1)
    mem_gb: float = Field(4, gt=0)
    timeout_min: int = Field(60, ge=1)
    # micro-batches per update (gradient accumulation): how a batch fits the GPUs, not what the job computes
    grad_accumulation: int = Field(1, ge=1)


class ResourceOverride(Strict):
    """Some keys of ``Resources``, replacing a stage's for one method's jobs."""

    nodes: int | None = Field(None, ge=1)
    gpus_per_node: int | None = Field(None, ge=0)
    tasks_per_node: int | None = Field(None, ge=1)
    cpus_per_task: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    timeout_min: int | None = Field(None, ge=1)
    grad_accumulation: int | None = Field(None, ge=1)


class StageResources(Strict):
    pretrain: Resources = Resources()
    downstream: Resources = Resources()
    # per method, e.g. {mae: {pretrain: {nodes: 1}}}; a downstream entry applies to the downstream jobs of that
    # method's pre-training
    methods: dict[str, dict[Literal["pretrain", "downstream"], ResourceOverride]] = {}

    def for_job(self, stage: str, method: str) -> Resources:
        """The resources of one job: the stage's, with the method's keys replacing theirs."""
        base: Resources = getattr(self, stage)
        override = self.methods.get(method, {}).get(stage)
        return base.model_copy(update=override.model_dump(exclude_none=True)) if override else base


class PretrainGrid(Strict):
    methods: list[str] = Field(min_length=1)
    datasets: list[Slug] = Field(min_length=1)
    fractions: list[float] = Field(default=[1.0], min_length=1)
    epochs: list[int] = Field(min_length=1)
    schedule: Literal["fixed-updates", "fixed-epochs"] = "fixed-updates"
    seeds: list[Seed] = Field(default=[0], min_length=1)
    subset_seed: Seed = 0  # which images a fraction keeps; the same for every method and training seed
    method_params: dict[str, dict[str, Any]] = {}
    # restrict a method to some of the grid's datasets (e.g. supervised only where there are image labels)
    method_datasets: dict[str, list[str]] = {}
    # fixed-updates: an epoch is one pass over this dataset (e.g. imagenet), so that pre-training on a smaller
    # set gets the updates of `epochs` epochs on it; None: each dataset's own full size
    updates_reference: str | None = None

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"fraction {f} is not in (0, 1]")
        return v

    @field_validator("epochs")
    @classmethod
    def _positive_epochs(cls, v: list[int]) -> list[int]:
        if any(e <= 0 for e in v):
            raise ValueError("epochs must be positive")
        return v


class Downstream(Strict):
    task: str
    dataset: Slug
    params: dict[str, Any] = {}
    # apply this entry only to upstream jobs of these methods / pre-trained on these datasets (None: all);
    # a job without pre-training data (random init) passes the dataset filter
    methods: list[str] | None = None
    pretrain_datasets: list[str] | None = None


class Scale(Strict):
    model: str | dict[str, Any]
    pretrain: PretrainGrid
    downstream: list[Downstream] = []
    resources: StageResources = StageResources()
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _cuda_needs_gpus(self) -> Scale:
        # SLURM and the local executor hide every GPU from a job that asks for none
        stages = ["pretrain"] + (["downstream"] if self.downstream else [])
        stages = [s for s in stages if getattr(self.resources, s).gpus_per_node == 0]
        if self.device == "cuda" and stages:
            raise ValueError(f"device is cuda but resources.{stages[0]}.gpus_per_node is 0: the scheduler would hide "
                             "every GPU from those jobs; ask for at least one GPU or use device: auto / cpu")
        return self


class Study(BaseModel):
    """A study at one scale, validated."""

    name: str
    description: str = ""
    scale_name: str
    scale: Scale
    source: str  # the file it came from
    datasets: dict[str, Any] = {}  # the datasets the study declares, as plain values a worker re-declares


class StudyFile(Strict):
    name: Slug
    description: str = ""
    default_scale: str = "tiny"
    datasets: Any = None  # declarations, validated by harness.data.declare
    common: dict[str, Any] = {}
    scales: dict[str, dict[str, Any]] = Field(min_length=1)


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _key_path(loc: tuple) -> str:
    parts = []
    for p in loc:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(parts).lstrip(".")


def _lookup(data: Any, loc: tuple) -> tuple[bool, Any]:
    for p in loc:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


def _origin(raw: StudyFile, scale: str, loc: tuple) -> str:
    """Where a merged key came from: the scale's own section if it sets it, else ``common``."""
    found, _ = _lookup(raw.scales[scale], loc)
    return f"scales.{scale}.{_key_path(loc)}" if found or not _lookup(raw.common, loc)[0] else f"common.{_key_path(loc)}"


def _check_name(kind: str, name: str, known: list[str], path: str, key: str, planned: tuple[str, ...] = ()) -> None:
    if name in known or name in planned:
        return
    guess = did_you_mean(name, known + list(planned))
    hint = f"; did you mean {guess!r}?" if guess else ""
    raise ConfigError(path, key, f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(known))})")


def check_names(study: Study, raw: StudyFile) -> None:
    from harness.data import DATASETS
    from harness.declarations import methods, tasks
    from harness.models.encoders import ENCODERS

    s, path, name = study.scale, study.source, study.scale_name
    if isinstance(s.model, str):
        _check_name("model", s.model, list(ENCODERS), path, _origin(raw, name, ("model",)))
    for i, m in enumerate(s.pretrain.methods):
        _check_name("method", m, methods().names(), path, _origin(raw, name, ("pretrain", "methods", i)), PAPER_METHODS)
    for m in s.pretrain.method_params:
        if m not in s.pretrain.methods:
            raise ConfigError(path, _origin(raw, name, ("pretrain", "method_params", m)),
                              f"parameters given for method {m!r}, which the grid does not list")
    for i, d in enumerate(s.pretrain.datasets):
        _check_name("dataset", d, DATASETS.names(), path, _origin(raw, name, ("pretrain", "datasets", i)))
    _check_subsets(s, path, lambda loc: _origin(raw, name, loc))
    if s.pretrain.updates_reference is not None:
        _check_name("dataset", s.pretrain.updates_reference, DATASETS.names(), path,
                    _origin(raw, name, ("pretrain", "updates_reference")))
    for i, ds in enumerate(s.downstream):
        _check_name("task", ds.task, tasks().names(), path, _origin(raw, name, ("downstream", i, "task")))
        _check_name("dataset", ds.dataset, DATASETS.names(), path, _origin(raw, name, ("downstream", i, "dataset")))


def _check_subsets(s: Scale, path: str, origin) -> None:
    """Filters (method_datasets, downstream methods / pretrain_datasets) may only name what the grid lists."""
    grid = s.pretrain
    checks = [(("pretrain", "method_datasets"), grid.method_datasets.keys(), grid.methods, "method"),
              (("resources", "methods"), s.resources.methods.keys(), grid.methods, "method")]
    checks += [(("pretrain", "method_datasets", m), ds, grid.datasets, "dataset") for m, ds in grid.method_datasets.items()]
    for i, entry in enumerate(s.downstream):
        checks.append((("downstream", i, "methods"), entry.methods or [], grid.methods, "method"))
        checks.append((("downstream", i, "pretrain_datasets"), entry.pretrain_datasets or [], grid.datasets, "dataset"))
    for loc, names, allowed, kind in checks:
        for n in names:
            if n not in allowed:
                raise ConfigError(path, origin(loc), f"{kind} {n!r} is not in the grid's {kind}s ({', '.join(allowed)})")


def _declare_datasets(path: Path, section: Any) -> dict[str, Any]:
    from harness.data.declare import as_portable, declare, study_declarations

    infos = study_declarations(path, section)
    declare(infos)
    return as_portable(infos)


def find_study_file(study: str | Path) -> Path:
    """A path, or a study name resolved in ``studies/`` (``imagenet-fractions`` -> ``studies/imagenet_fractions.yaml``)."""
    p = Path(study)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(str(p), "", "study file not found")
        return p
    folder = Path("studies")
    candidates = [folder / f"{study}.yaml", folder / f"{str(study).replace('-', '_')}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    known = sorted(f.stem.replace("_", "-") for f in folder.glob("*.yaml")) if folder.is_dir() else []
    guess = did_you_mean(str(study), known)
    hint = f"; did you mean {guess!r}?" if guess else ""
    raise ConfigError(str(study), "", f"no such study{hint} (known: {', '.join(known) or 'none'})")


def _apply_sets(merged: dict, sets: list[str]) -> tuple[dict, dict[tuple, str]]:
    """``KEY=VALUE`` overrides (``pretrain.epochs=[3]``, ``downstream.0.params.epochs=2``; VALUE is YAML) applied
    to a scale's merged mapping; returns it and ``{key path: the override's text}`` for error messages."""
    out = yaml.safe_load(yaml.safe_dump(merged))  # a deep copy
    origins: dict[tuple, str] = {}
    for text in sets:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", text, "expected KEY=VALUE, e.g. --set 'pretrain.epochs=[3]'")
        try:
            value = yamlfile.loads(raw)
        except yaml.YAMLError as e:
            raise ConfigError("--set", key, f"the value is not valid YAML: {e}", raw) from None
        loc = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
        node = out
        for i, part in enumerate(loc[:-1]):
            found, child = _lookup(node, (part,))
            if not found:
                if isinstance(part, int) or not isinstance(node, dict):
                    raise ConfigError("--set", key, f"{_key_path(loc[:i + 1])} does not exist", raw)
                child = node[part] = {}
            node = child
        if isinstance(loc[-1], int) and not (isinstance(node, list) and loc[-1] < len(node)):
            raise ConfigError("--set", key, f"{_key_path(loc)} does not exist", raw)
        node[loc[-1]] = value
        origins[loc] = f"--set {text}"
    return out, origins


def _set_origin(origins: dict[tuple, str], loc: tuple) -> str | None:
    return next((text for key, text in origins.items() if loc[:len(key)] == key), None)


def parse_seeds(text: str | None) -> int | list[int] | None:
    """``--seeds 3`` -> 3 (seeds 0, 1, 2); ``--seeds 0,4`` -> [0, 4]."""
    if text is None:
        return None
    try:
        seeds = [int(x) for x in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise HarnessError(f"--seeds {text!r}: expected a count N (seeds 0..N-1) or a list such as 0,1,2") from None
    check_seeds(seeds)
    return seeds


def check_seeds(seeds: int | list[int]) -> None:
    if isinstance(seeds, int) and seeds < 1:
        raise HarnessError(f"--seeds {seeds}: a count of seeds must be at least 1 (or give a list such as 0,1,2)")
    if isinstance(seeds, list) and any(s < 0 for s in seeds):
        raise HarnessError(f"--seeds {','.join(map(str, seeds))}: seeds must be non-negative")


def _read_study_file(path: Path) -> tuple[dict, StudyFile]:
    try:
        data = yamlfile.loads(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "", f"not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "a study file must be a mapping")
    try:
        return data, StudyFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        found, value = _lookup(data, err["loc"])
        raise ConfigError(str(path), _key_path(err["loc"]), err["msg"].removeprefix("Value error, "), value if found else None) from None


def study_name(study: str | Path) -> str:
    """The validated name of a study (its folder under the results root), without validating its scales."""
    return study_header(study)[0]


def study_header(study: str | Path) -> tuple[str, str]:
    """(validated name, default scale) of a study file, without validating its scales (no registry needed)."""
    raw = _read_study_file(find_study_file(study))[1]
    return raw.name, raw.default_scale


def load_study(study: str | Path, scale: str | None = None, seeds: int | list[int] | None = None,
               sets: list[str] | None = None) -> Study:
    """Load and validate a study at a scale. ``seeds`` overrides the grid's seeds: a count n (seeds 0..n-1) or a list;
    ``sets`` overrides any key of the scale (``["pretrain.epochs=[3]"]``), validated like the file."""
    path = find_study_file(study)
    data, raw = _read_study_file(path)
    scale = scale or raw.default_scale
    if scale not in raw.scales:
        guess = did_you_mean(scale, list(raw.scales))
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ConfigError(str(path), "scales", f"no scale {scale!r}{hint} (scales: {', '.join(raw.scales)})")
    merged = deep_merge(raw.common, raw.scales[scale])
    if seeds is not None:
        check_seeds(seeds)
        merged = deep_merge(merged, {"pretrain": {"seeds": list(range(seeds)) if isinstance(seeds, int) else list(seeds)}})
    merged, set_origins = _apply_sets(merged, sets or [])
    try:
        scale_model = Scale.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        found, value = _lookup(merged, err["loc"])
        key = _origin(raw, scale, err["loc"]) if err["loc"] else f"scales.{scale}"
        if set_text := _set_origin(set_origins, err["loc"]):
            path, key = f"{path} ({set_text})", _key_path(err["loc"])
        raise ConfigError(str(path), key, err["msg"].removeprefix("Value error, "), value if found else None) from None
    study_obj = Study(name=raw.name, description=raw.description, scale_name=scale, scale=scale_model, source=str(path),
                      datasets=_declare_datasets(path, raw.datasets))
    check_names(study_obj, raw)
    return study_obj
