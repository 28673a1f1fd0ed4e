"""The dataset registry: each dataset is one ``DatasetInfo`` entry, registered by name.

A dataset knows its kind (classification / detection / segmentation), a short alias for job ids, how to find
its root (a user-given path, or a synthetic generator writing the real format into the cache) and how to
index a split (a layout reader). Readers and generators are the only dataset-specific code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # "classification" | "detection" | "segmentation"
    alias: str  # short, for job ids: "in1k", "coco", "synobj"
    layout: str  # "imagefolder" | "coco" | "ade20k" | "inat2019"
    description: str
    generator: Callable[[Path, int], None] | None = None  # synthetic: writes the real layout under a root
    generator_version: int = 1  # bump when a generator's output changes
    splits: tuple[str, ...] = ("train", "val")
    labels_for_fractions: bool = True  # class-balanced fractions when labels exist
    extra: dict = field(default_factory=dict, hash=False, compare=False)
    root: str | None = None  # declared root: a path or $VAR (HARNESS_DATA_<NAME> and the data-roots file win)
    source: str = field(default="", compare=False)  # the YAML file that declared it

    @property
    def synthetic(self) -> bool:
        return self.generator is not None


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    return DATASETS.register(info.name)(info)
