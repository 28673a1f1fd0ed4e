"""Datasets declared in YAML: the built-in catalog (``catalog.yaml``), a study file's ``datasets:`` section and a
``datasets.yaml`` beside the study file all use the same keys::

    datasets:
      my-flowers:                     # the name study files use
        kind: classification          # classification | detection | segmentation
        layout: imagefolder           # imagefolder | coco | ade20k | inat2019
        root: ~/data/flowers          # a path (relative: to the declaring file), or $VAR / ${VAR}
        splits: {train: train, val: test}   # optional: split -> folder (default train/ and val/)

Optional keys: ``alias`` (short name in job ids, default the name), ``description``, ``classes`` (ImageFolder:
the expected class folders, in label order), ``num_classes`` (ADE20k layout without objectInfo150.txt),
``labels_for_fractions`` (class-balanced fractions; default: classification sets), ``images`` (split -> image
count, for ``harness plan`` before the data is there), and for a synthetic set
``generator`` (``module:function`` writing the layout under a root) and ``generator_version``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.data.registry import DATASETS, DatasetInfo
from harness.errors import ConfigError

CATALOG = Path(__file__).with_name("catalog.yaml")
LAYOUT_NAMES = {"imagefolder": "imagefolder", "coco": "coco", "ade20k": "ade20k", "inat": "inat2019",
                "inat2019": "inat2019"}


class DatasetDecl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["classification", "detection", "segmentation"]
    layout: str
    root: str | None = None
    alias: str | None = Field(None, pattern=r"^[A-Za-z0-9_]+$")
    description: str = ""
    splits: dict[str, str] = {"train": "train", "val": "val"}
    classes: list[str] | None = None
    num_classes: int | None = Field(None, ge=1)
    images: dict[str, int] = {}  # split -> image count: estimates a plan before the data is here
    labels_for_fractions: bool | None = None
    generator: str | None = None
    generator_version: int = Field(1, ge=1)

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, v: str) -> str:
        key = v.lower()
        if key not in LAYOUT_NAMES:
            raise ValueError(f"unknown layout; known: {', '.join(sorted(set(LAYOUT_NAMES.values())))}")
        return LAYOUT_NAMES[key]

    @field_validator("splits")
    @classmethod
    def _train_and_val(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) != {"train", "val"}:
            raise ValueError("splits must map exactly train and val to folders (e.g. {train: train, val: test})")
        return v


def _import_generator(path: str, file: str, key: str):
    module, _, func = path.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(file, key, f"cannot import the generator ({e}); expected 'module:function'", path) from None


def _root(decl: DatasetDecl, file: Path) -> str | None:
    """A literal path relative to the declaring file becomes absolute; $VAR stays, read when the set is used."""
    if decl.root is None or decl.root.startswith("$"):
        return decl.root
    root = Path(decl.root).expanduser()
    return str(root if root.is_absolute() else (file.parent / root).resolve())


def to_info(name: str, decl: DatasetDecl, file: Path) -> DatasetInfo:
    extra: dict[str, Any] = {}
    if decl.splits != {"train": "train", "val": "val"}:
        extra["split_dirs"] = {k: v for k, v in decl.splits.items() if k != v}
    if decl.num_classes is not None:
        extra["num_classes"] = decl.num_classes
    if decl.images:
        extra["images"] = dict(decl.images)
    if decl.classes is not None:
        if decl.layout != "imagefolder":
            raise ConfigError(str(file), f"datasets.{name}.classes", "class names are read from the annotations in "
                              f"the {decl.layout} layout; only an imagefolder dataset takes a classes list")
        extra["classes"] = list(decl.classes)
    generator = _import_generator(decl.generator, str(file), f"datasets.{name}.generator") if decl.generator else None
    return DatasetInfo(
        name=name, kind=decl.kind, alias=decl.alias or name, layout=decl.layout, description=decl.description,
        generator=generator, generator_version=decl.generator_version,
        labels_for_fractions=decl.labels_for_fractions if decl.labels_for_fractions is not None
        else decl.kind == "classification",
        extra=extra, root=_root(decl, file), source=str(file),
    )


def parse_declarations(data: Any, file: Path, key: str = "datasets") -> dict[str, DatasetInfo]:
    """``{name: declaration}`` -> ``{name: DatasetInfo}``; an error names the file, the key and the value."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(file), key, "expected a mapping of dataset name to its declaration", data)
    out = {}
    for name, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(str(file), f"{key}.{name}", "expected a mapping (kind, layout, root, ...)", body)
        try:
            decl = DatasetDecl.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            value = body.get(err["loc"][0]) if err["loc"] and err["type"] != "missing" else None
            raise ConfigError(str(file), f"{key}.{name}.{loc}" if loc else f"{key}.{name}", err["msg"], value) from None
        out[str(name)] = to_info(str(name), decl, file)
    return out


def declare(infos: dict[str, DatasetInfo]) -> None:
    """Register declared datasets. A name may be declared again by a user file (the last one wins), but a
    built-in dataset keeps its catalog entry."""
    for name, info in infos.items():
        if name in DATASETS:
            old = DATASETS.get(name)
            if old.source == str(CATALOG) and info.source != str(CATALOG):
                raise ConfigError(info.source, f"datasets.{name}", f"{name!r} is a built-in dataset "
                                  f"({old.description}); give yours another name, or set its root with "
                                  f"HARNESS_DATA_{name.upper().replace('-', '_')}")
        DATASETS.replace(name, info)


def study_declarations(study_file: Path, section: Any) -> dict[str, DatasetInfo]:
    """What a study file declares: ``datasets.yaml`` beside it, then its own ``datasets:`` section (which wins)."""
    beside = study_file.parent / "datasets.yaml"
    infos: dict[str, DatasetInfo] = {}
    if beside.is_file():
        try:
            data = yaml.safe_load(beside.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(str(beside), "", f"not valid YAML: {e}") from None
        if isinstance(data, dict) and set(data) == {"datasets"}:
            data = data["datasets"]
        infos.update(parse_declarations(data, beside, key="datasets" if data is not None else ""))
    infos.update(parse_declarations(section, study_file))
    return infos


def load_catalog() -> None:
    declare(parse_declarations(yaml.safe_load(CATALOG.read_text()), CATALOG))


def as_portable(infos: dict[str, DatasetInfo]) -> dict[str, dict[str, Any]]:
    """Declarations as plain values (for a job's spec): a worker re-declares them before it runs."""
    out = {}
    for name, info in infos.items():
        gen = info.generator
        out[name] = {"source": info.source, "declaration": {
            "kind": info.kind, "layout": info.layout, "root": info.root, "alias": info.alias,
            "description": info.description,
            "splits": {s: info.extra.get("split_dirs", {}).get(s, s) for s in ("train", "val")},
            "classes": info.extra.get("classes"), "num_classes": info.extra.get("num_classes"),
            "images": info.extra.get("images", {}),
            "labels_for_fractions": info.labels_for_fractions,
            "generator": f"{gen.__module__}:{gen.__name__}" if gen else None,
            "generator_version": info.generator_version,
        }}
    return out


def declare_portable(data: dict[str, dict[str, Any]]) -> None:
    """Register what ``as_portable`` wrote (its roots are already absolute or $VAR)."""
    import harness.data  # noqa: F401  (the built-in catalog first: a declaration may not shadow it)

    for name, entry in data.items():
        declare(parse_declarations({name: entry["declaration"]}, Path(entry["source"])))
