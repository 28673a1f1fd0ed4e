"""The tiny imagenet-fractions (the default and its longer variant) gives every one of its claims a verdict when the
data allow: at least 3 seeds and a planned cell for every selector of analysis/claims.yaml (the 5 % fraction
included)."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.claims import UNKNOWN, evaluate_study
from harness.collect import COLUMNS
from harness.plan import make_plan
from harness.spec import load_study


def _planned_frame(values, scale: str) -> pd.DataFrame:
    """One top-1 row per planned fine-tune job, its value given by ``values(coords)``: the study's real cells."""
    plan = make_plan(load_study("imagenet-fractions", scale))
    rows = [{**dict.fromkeys(COLUMNS), **j.coords, "study": "imagenet-fractions", "scale": scale, "stage": j.stage,
             "job_id": j.id, "metric": "top1", "split": "val", "value": values(j.coords), "updates": 0, "wall_time_s": 0}
            for j in plan.downstream if j.coords["task"] == "finetune"]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.mark.parametrize("scale", ["tiny", "tiny-long"])
def test_the_tiny_grid_has_three_seeds_and_a_cell_for_every_claim(scale):
    def separated(c):  # every method loses 10 points per halving of data, plus seed noise: clear verdicts everywhere
        return 50 + 10 * c["fraction"] + 0.3 * c["seed"] if c["fraction"] is not None else 20 + 0.3 * c["seed"]

    results = evaluate_study(_planned_frame(separated, scale), "imagenet-fractions")
    assert results and {r.claim.id for r in results} >= {"beit-5pct-plateau", "splitmask-5pct-plateau"}
    undecided = [(r.claim.id, [p.reason for p in r.panels]) for r in results if r.verdict == UNKNOWN]
    assert not undecided
