"""A micro study for the spine's tests: two pre-training jobs and a random init, each fine-tuned once; a few
seconds per job on one CPU thread."""

from __future__ import annotations

from pathlib import Path

import yaml

MICRO = {
    "name": "micro",
    "description": "spine test",
    "scales": {
        "tiny": {
            "model": "vit-tiny-16",
            "device": "cpu",
            "pretrain": {
                "methods": ["none", "supervised"],
                "datasets": ["synthetic-objects"],
                "fractions": [0.1, 0.2],
                "epochs": [3],
                "schedule": "fixed-epochs",
                "method_params": {"supervised": {"batch_size": 32}},
            },
            "downstream": [{"task": "finetune", "dataset": "synthetic-objects",
                            "params": {"epochs": 1, "batch_size": 128}}],
        }
    },
}


def write_micro(folder: Path, **overrides) -> Path:
    data = yaml.safe_load(yaml.safe_dump(MICRO))
    data["scales"]["tiny"]["pretrain"].update(overrides)
    path = folder / "micro.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
