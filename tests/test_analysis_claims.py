"""Claims: the claims file is well-formed and honest (only the paper's two numbers), and each kind of verdict
logic gives holds / does not hold / not enough data on constructed frames (fixtures, made-up values)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.claims import FAILS, HOLDS, UNKNOWN, Claim, evaluate_claim, evaluate_study, load_claims, write_claims
from tests.analysis_frames import FrameBuilder, coco_frame, fractions_frame

STAND_INS = load_claims().stand_ins


def _claim(**kw) -> Claim:
    base = {"id": "t", "study": "coco", "statement": "s", "paper": "p", "task": "detection", "metric": "bbox_AP"}
    return Claim.model_validate({**base, **kw})


def _two_cells(a_values, b_values):
    b = FrameBuilder("coco")
    b.add_seeds("splitmask", "synthetic-scenes", "detection", "synthetic-scenes", "bbox_AP", a_values)
    b.add_seeds("beit", "synthetic-scenes", "detection", "synthetic-scenes", "bbox_AP", b_values)
    return b.frame()


BETTER = _claim(kind="better", a={"method": "splitmask", "pretrain_dataset": "coco"},
                b={"method": "beit", "pretrain_dataset": "coco"})
NO_WORSE = _claim(kind="no_worse", a={"method": "splitmask", "pretrain_dataset": "coco"},
                  b={"method": "beit", "pretrain_dataset": "coco"})


@pytest.mark.parametrize("a, b, verdict", [
    ([30.0, 30.2, 30.4], [29.0, 29.2, 29.4], HOLDS),          # +1 with SE 0.16
    ([29.0, 29.2, 29.4], [30.0, 30.2, 30.4], FAILS),          # the other way round
    ([30.0, 30.1], [30.0, 30.1], FAILS),                      # equal: no evidence it beats
    ([30.0, 30.0], [29.0, 29.0], UNKNOWN),                    # no spread over seeds: no measure of the noise
    ([30.0, 31.0, 29.5], [29.9, 30.5, 29.6], UNKNOWN),         # right direction, inside 2 SE
    ([31.0], [29.0], UNKNOWN),                                # one seed: no spread, not enough data
    ([30.8, 30.6, 30.4], [30.6, 30.4, 30.8], FAILS),          # equal means whose sums differ in the last bits
])
def test_better(a, b, verdict):
    result = evaluate_claim(BETTER, _two_cells(a, b), STAND_INS)
    assert result.verdict == verdict
    if sorted(a) == sorted(b):
        assert result.panels[0].difference == 0.0


@pytest.mark.parametrize("a, b, verdict", [
    ([29.9, 30.1], [30.0, 30.2], HOLDS),    # slightly lower but within the noise
    ([31.0, 31.2], [30.0, 30.2], HOLDS),
    ([25.0, 25.2], [30.0, 30.2], FAILS),
    ([30.0], [30.0, 30.1], UNKNOWN),
])
def test_no_worse(a, b, verdict):
    assert evaluate_claim(NO_WORSE, _two_cells(a, b), STAND_INS).verdict == verdict


def test_missing_cell_is_not_enough_data():
    frame = _two_cells([30.0, 30.1], [29.0, 29.1])
    claim = _claim(kind="better", a={"method": "splitmask", "pretrain_dataset": "coco"},
                   b={"method": "supervised", "pretrain_dataset": "imagenet"})
    result = evaluate_claim(claim, frame, STAND_INS)
    assert result.verdict == UNKNOWN and "no results" in result.panels[0].reason
    assert evaluate_claim(BETTER, frame.iloc[0:0], STAND_INS).verdict == UNKNOWN


def test_stand_ins_map_synthetic_sets_to_paper_names_and_null_is_random_init():
    claim = _claim(kind="better", a={"method": "splitmask", "pretrain_dataset": "coco"},
                   b={"method": "none", "pretrain_dataset": None})
    result = evaluate_claim(claim, coco_frame(seeds=3), STAND_INS)
    assert result.verdict == HOLDS
    assert result.panels[0].difference == pytest.approx(10.0)
    assert all(j.startswith("detection.synthetic-scenes-none") for j in result.panels[0].samples["B"].job_ids)


@pytest.mark.parametrize("dino_drop, seeds, verdict", [(20.0, 3, HOLDS), (0.0, 3, FAILS), (20.0, 1, UNKNOWN)])
def test_degrades_more(dino_drop, seeds, verdict):
    claim = next(c for c in load_claims().claims if c.id == "dino-degrades-more-than-beit")
    result = evaluate_claim(claim, fractions_frame(seeds=seeds, dino_drop=dino_drop), STAND_INS)
    assert result.verdict == verdict
    if seeds > 1:  # drop(DINO) - drop(BEiT) between the largest (100%) and smallest (10%) fractions
        assert result.panels[0].difference == pytest.approx(dino_drop)


def _schedule_frame(values_by_epochs):
    b = FrameBuilder("long-schedule")
    for e, values in values_by_epochs.items():
        b.add_seeds("splitmask", "synthetic-fine", "finetune", "synthetic-fine", "top1", values, epochs=e)
    return b.frame()


@pytest.mark.parametrize("curve, verdict", [
    ({4: [50.0, 50.2], 12: [56.0, 56.2], 36: [54.0, 54.2]}, HOLDS),
    ({4: [50.0, 50.2], 12: [54.0, 54.2], 36: [56.0, 56.2]}, FAILS),
    ({4: [50.0, 50.2]}, UNKNOWN),
])
def test_longest_not_best(curve, verdict):
    claim = next(c for c in load_claims().claims if c.id == "long-schedule-splitmask-overfits")
    assert evaluate_claim(claim, _schedule_frame(curve), STAND_INS).verdict == verdict


def test_claim_on_several_targets_fails_if_one_fails():
    b = FrameBuilder("small-datasets")
    for target, own in (("stanford-cars", 72.0), ("domainnet-sketch", 50.0)):
        b.add_seeds("splitmask", target, "finetune", target, "top1", [own, own + 0.2])
        b.add_seeds("splitmask", "imagenet", "finetune", target, "top1", [70.0, 70.2])
    claim = next(c for c in load_claims().claims if c.id == "small-splitmask-target-competitive")
    result = evaluate_claim(claim, b.frame(), STAND_INS)
    assert {p.task_dataset: p.verdict for p in result.panels} == {"stanford-cars": HOLDS, "domainnet-sketch": FAILS}
    assert result.verdict == FAILS


def test_ambiguous_selector_is_refused():
    frame = fractions_frame(seeds=2)
    claim = _claim(study="imagenet-fractions", task="finetune", metric="top1", kind="better",
                   a={"method": "dino"}, b={"method": "beit", "fraction": 1.0})  # dino over three fractions
    result = evaluate_claim(claim, frame, STAND_INS)
    assert result.verdict == UNKNOWN and "several grid cells" in result.panels[0].reason


def test_claims_file_names_real_studies_and_only_the_papers_numbers():
    claims = load_claims()
    studies = {yaml.safe_load(p.read_text())["name"] for p in Path("studies").glob("*.yaml")}
    assert {c.study for c in claims.claims} <= studies
    references = {(c.metric, c.reference.difference, c.reference.model) for c in claims.claims if c.reference}
    assert references == {("bbox_AP", 0.6, "ViT-S/16"), ("segm_AP", 0.3, "ViT-B/16")}
    for c in claims.claims:
        assert c.statement and c.paper and c.rule
    kinds = {c.kind for c in claims.claims}
    assert kinds == {"better", "no_worse", "degrades_more", "longest_not_best"}


def test_reference_is_shown_not_used():
    claim = next(c for c in load_claims().claims if c.id == "coco-splitmask-beats-beit-box")
    result = evaluate_claim(claim, _two_cells([30.0, 30.1], [29.95, 30.05]), STAND_INS)  # +0.05 only
    assert result.verdict == UNKNOWN  # not judged against the paper's +0.6
    assert "+0.6" in result.reference_text and "ViT-S/16" in result.reference_text


def test_evaluate_study_and_outputs(tmp_path):
    results = evaluate_study(fractions_frame(seeds=3), "imagenet-fractions")
    verdicts = {r.claim.id: r.verdict for r in results}
    assert verdicts["dino-degrades"] == HOLDS and verdicts["beit-fraction-plateau"] == HOLDS
    assert verdicts["beit-5pct-plateau"] == UNKNOWN  # no 5% cell in the frame
    assert all(r.claim.study == "imagenet-fractions" for r in results)
    paths = write_claims(results, tmp_path)
    assert all(p.exists() for p in paths)
    assert "dino-degrades" in (tmp_path / "claims.md").read_text()
