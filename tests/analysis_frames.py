"""Synthetic collected frames for the analysis tests: clearly fixtures (made-up values), never written under
results/. Each row mimics what harness.collect produces for one metric of one downstream job."""

from __future__ import annotations

import math

import pandas as pd

from harness.collect import COLUMNS


class FrameBuilder:
    def __init__(self, study: str, scale: str = "tiny"):
        self.study, self.scale, self.rows = study, scale, []

    def add(self, method: str, pretrain_dataset: str | None, task: str, task_dataset: str,
            metrics: dict[str, float], *, fraction: float | None = 1.0, epochs: int | None = 8,
            seed: int = 0) -> str:
        if pretrain_dataset is None:
            fraction = epochs = None
        tag = f"{method}-{pretrain_dataset}-f{fraction}-e{epochs}-s{seed}"
        job_id, upstream = f"{task}.{task_dataset}-{tag}", f"pre-{tag}"
        for name, value in metrics.items():
            self.rows.append({"study": self.study, "scale": self.scale, "stage": "downstream", "job_id": job_id,
                              "upstream": upstream, "method": method, "pretrain_dataset": pretrain_dataset,
                              "fraction": fraction, "epochs": epochs, "seed": seed, "task": task,
                              "task_dataset": task_dataset, "metric": name, "split": "val", "value": value,
                              "updates": 100, "wall_time_s": 1.0})
        return job_id

    def add_seeds(self, method, pretrain_dataset, task, task_dataset, metric: str, values: list[float], **kw) -> list[str]:
        return [self.add(method, pretrain_dataset, task, task_dataset, {metric: v}, seed=i, **kw)
                for i, v in enumerate(values)]

    def frame(self) -> pd.DataFrame:
        f = pd.DataFrame(self.rows, columns=COLUMNS)
        f["fraction"] = pd.to_numeric(f["fraction"], errors="coerce")
        f["epochs"] = pd.to_numeric(f["epochs"], errors="coerce").astype("Int64")
        f["pretrain_dataset"] = f["pretrain_dataset"].astype(object).where(f["pretrain_dataset"].notna(), None)
        return f


def fractions_frame(seeds: int = 3, dino_drop: float = 20.0) -> pd.DataFrame:
    """imagenet-fractions: BEiT/SplitMask flat in the fraction, DINO/supervised dropping, random init flat."""
    b = FrameBuilder("imagenet-fractions")
    curves = {"beit": lambda f: 80.0, "splitmask": lambda f: 81.0,
              "dino": lambda f: 78.0 + dino_drop * math.log10(f) / 1.0, "supervised": lambda f: 79.0 + 10 * math.log10(f)}
    for method, curve in curves.items():
        for f in (0.1, 0.5, 1.0):
            b.add_seeds(method, "synthetic-objects", "finetune", "synthetic-objects", "top1",
                        [curve(f) + 0.1 * (s - 1) for s in range(seeds)], fraction=f)
    b.add_seeds("none", None, "finetune", "synthetic-objects", "top1", [40.0 + 0.1 * s for s in range(seeds)])
    return b.frame()


def coco_frame(seeds: int = 3) -> pd.DataFrame:
    b = FrameBuilder("coco")
    cells = [("splitmask", "synthetic-scenes", 30.0, 27.0), ("beit", "synthetic-scenes", 29.0, 26.5),
             ("beit", "synthetic-objects", 28.0, 25.0), ("dino", "synthetic-scenes", 22.0, 20.0),
             ("dino", "synthetic-objects", 27.0, 24.0), ("supervised", "synthetic-objects", 26.0, 23.0),
             ("none", None, 20.0, 18.0)]
    for method, data, box, mask in cells:
        for s in range(seeds):
            b.add(method, data, "detection", "synthetic-scenes",
                  {"bbox_AP": box + 0.1 * s, "bbox_AP50": box + 20, "segm_AP": mask + 0.1 * s}, seed=s)
    return b.frame()
