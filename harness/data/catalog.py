"""Every dataset the harness knows, one entry each. Add a dataset: a layout reader (if new) and an entry here.

Real datasets are found by path (``HARNESS_DATA_<NAME>`` or the data-roots file, see ``roots.py``); synthetic
ones are generated into the cache on first use, in the same layout as the real set they stand in for.
"""

from __future__ import annotations

from harness.data.registry import DatasetInfo, register_dataset
from harness.data.synthetic.fine import generate_fine
from harness.data.synthetic.objects import generate_objects
from harness.data.synthetic.scenes import generate_scenes
from harness.data.synthetic.segmentation import generate_segmentation

# synthetic stand-ins (tiny, CPU-friendly, deterministic from a seed)
register_dataset(DatasetInfo(
    name="synthetic-objects", kind="classification", alias="synobj", layout="imagefolder",
    description="object-centric shapes with textures and clutter, 10 classes (ImageNet stand-in)",
    generator=generate_objects, generator_version=2,
))
register_dataset(DatasetInfo(
    name="synthetic-scenes", kind="detection", alias="synscn", layout="coco",
    description="2-5 small occluding shapes of 5 categories on cluttered backgrounds, COCO instances (COCO stand-in)",
    generator=generate_scenes, labels_for_fractions=False,
))
register_dataset(DatasetInfo(
    name="synthetic-segmentation", kind="segmentation", alias="synseg", layout="ade20k",
    description="stuff (sky, wall, grass, road) and things (5 shapes) with per-pixel labels (ADE20k stand-in)",
    generator=generate_segmentation, labels_for_fractions=False,
))
register_dataset(DatasetInfo(
    name="synthetic-fine", kind="classification", alias="synfine", layout="imagefolder",
    description="24 vehicle models of 4 makes (shared silhouettes) differing in details (Stanford Cars stand-in)",
    generator=generate_fine, generator_version=2,
))

# real datasets, by path
register_dataset(DatasetInfo(
    name="imagenet", kind="classification", alias="in1k", layout="imagefolder",
    description="ImageNet-1k (ILSVRC-2012) as train/ and val/ class folders",
))
register_dataset(DatasetInfo(
    name="coco", kind="detection", alias="coco", layout="coco", labels_for_fractions=False,
    description="COCO 2017: train2017/, val2017/ and annotations/instances_*.json",
))
register_dataset(DatasetInfo(
    name="ade20k", kind="segmentation", alias="ade", layout="ade20k", labels_for_fractions=False,
    description="ADE20k scene parsing (ADEChallengeData2016), 150 classes", extra={"num_classes": 150},
))
register_dataset(DatasetInfo(
    name="stanford-cars", kind="classification", alias="cars", layout="imagefolder",
    description="Stanford Cars (196 classes) exported as train/ and test/ class folders",
    extra={"split_dirs": {"val": "test"}},
))
for _domain, _alias in (("clipart", "dnclip"), ("sketch", "dnsketch"), ("painting", "dnpaint")):
    register_dataset(DatasetInfo(
        name=f"domainnet-{_domain}", kind="classification", alias=_alias, layout="imagefolder",
        description=f"DomainNet {_domain} (345 classes) exported as train/ and test/ class folders",
        extra={"split_dirs": {"val": "test"}},
    ))
register_dataset(DatasetInfo(
    name="inat2019", kind="classification", alias="inat19", layout="inat2019",
    description="iNaturalist 2019 (1010 classes): train2019.json, val2019.json and train_val2019/",
))
