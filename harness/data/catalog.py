"""Every dataset the harness knows, one entry each. Add a dataset: a layout reader (if new) and an entry here."""

from __future__ import annotations

from harness.data.registry import DatasetInfo, register_dataset
from harness.data.synthetic.objects import generate_objects

register_dataset(DatasetInfo(
    name="synthetic-objects", kind="classification", alias="synobj", layout="imagefolder",
    description="object-centric shapes with textures and clutter, 10 classes (ImageNet stand-in)",
    generator=generate_objects,
))
register_dataset(DatasetInfo(
    name="imagenet", kind="classification", alias="in1k", layout="imagefolder",
    description="ImageNet-1k (ILSVRC-2012) as train/ and val/ class folders",
))
