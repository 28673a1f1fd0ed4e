"""Tables: shapes, mean ± std (n), LaTeX validity and escaping, and cell provenance (on fixture frames)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.tables import latex_escape, provenance_frame, study_tables, to_latex, to_markdown, write_tables
from tests.analysis_frames import FrameBuilder, coco_frame, fractions_frame


def _by_stem(frame):
    return {t.stem: t for t in study_tables(frame)}


def test_fraction_table_is_methods_by_fractions_with_mean_std_n():
    t = _by_stem(fractions_frame(seeds=3))["fractions-finetune-synthetic-objects-top1"]
    assert t.rows == ["random init", "supervised", "DINO", "BEiT", "SplitMask"]
    assert t.columns == ["10%", "50%", "100%", "no data"]
    # DINO at 10%: 58 + 0.1 * (seed - 1) for seeds 0..2 -> mean 58.0, std 0.1, n 3
    assert t.text("DINO", "10%") == "58.00 ± 0.10 (3)"
    assert t.text("random init", "no data") == "40.10 ± 0.10 (3)"
    assert t.text("random init", "10%") == ""  # random init has no fraction
    cell = t.cells[("DINO", "10%")]
    assert cell.n == 3 and cell.mean == pytest.approx(58.0) and cell.std == pytest.approx(0.1)


def test_single_seed_cells_show_no_spread():
    t = _by_stem(fractions_frame(seeds=1))["fractions-finetune-synthetic-objects-top1"]
    assert t.text("BEiT", "100%") == "79.90 (1)"


def test_coco_tables_are_data_by_method_per_metric_plus_summary():
    tables = _by_stem(coco_frame(seeds=2))
    assert set(tables) == {"summary-detection-synthetic-scenes", "data-x-method-detection-synthetic-scenes-bbox_AP",
                           "data-x-method-detection-synthetic-scenes-segm_AP"}
    box = tables["data-x-method-detection-synthetic-scenes-bbox_AP"]
    assert box.rows == ["synthetic-scenes", "synthetic-objects", "none (random init)"]  # the target's own data first
    assert box.columns == ["random init", "supervised", "DINO", "BEiT", "SplitMask"]
    assert box.text("synthetic-scenes", "SplitMask") == "30.05 ± 0.07 (2)"
    assert box.text("synthetic-scenes", "supervised") == ""
    summary = tables["summary-detection-synthetic-scenes"]
    assert summary.columns == ["bbox_AP", "bbox_AP50", "segm_AP"]
    assert "SplitMask (synthetic-scenes)" in summary.rows


def test_target_by_source_table_for_small_datasets():
    b = FrameBuilder("small-datasets")
    for target, own, imnet in (("stanford-cars", 70.0, 72.0), ("domainnet-sketch", 60.0, 59.0)):
        b.add_seeds("splitmask", target, "finetune", target, "top1", [own, own + 1])
        b.add_seeds("splitmask", "imagenet", "finetune", target, "top1", [imnet, imnet + 1])
        b.add_seeds("none", None, "finetune", target, "top1", [10.0, 11.0])
    t = _by_stem(b.frame())["target-x-source-finetune-top1"]
    assert t.rows == ["domainnet-sketch", "stanford-cars"]
    assert t.columns == ["random init", "SplitMask / target", "SplitMask / imagenet"]
    assert t.text("stanford-cars", "SplitMask / target") == "70.50 ± 0.71 (2)"
    assert t.text("domainnet-sketch", "SplitMask / imagenet") == "59.50 ± 0.71 (2)"


def test_epochs_table_when_schedules_vary():
    b = FrameBuilder("long-schedule")
    for e, v in ((4, 50.0), (12, 55.0), (36, 54.0)):
        b.add_seeds("beit", "synthetic-fine", "finetune", "synthetic-fine", "top1", [v, v + 0.2], epochs=e)
    t = _by_stem(b.frame())["epochs-finetune-synthetic-fine-top1"]
    assert t.columns == ["4 ep", "12 ep", "36 ep"] and t.rows == ["BEiT"]


def test_markdown_and_latex_render_every_cell():
    t = _by_stem(fractions_frame(seeds=2))["fractions-finetune-synthetic-objects-top1"]
    md = to_markdown(t).splitlines()
    assert len(md) == 2 + len(t.rows) and md[0].count("|") == len(t.columns) + 2
    tex = to_latex(t)
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert r"\begin{tabular}{lcccc}" in tex
    body = tex[tex.index(r"\midrule"):tex.index(r"\bottomrule")].splitlines()[1:]
    assert len(body) == len(t.rows) and all(line.count("&") == len(t.columns) and line.endswith(r"\\") for line in body)
    assert r"10\%" in tex and r"$\pm$" in tex and "±" not in tex
    unescaped = re.sub(r"\\[{}]", "", tex)
    assert unescaped.count("{") == unescaped.count("}") and tex.count("$") % 2 == 0
    assert tex.count(r"\begin{") == tex.count(r"\end{") == 2
    # no unescaped % (a LaTeX comment) except the leading package note, no unescaped _
    for line in tex.splitlines()[1:]:
        assert not re.search(r"(?<!\\)%", line), line
        assert not re.search(r"(?<![\\a-zA-Z{:-])_", line.replace(r"\label{", "")), line


def test_latex_escape_covers_specials():
    assert latex_escape("a_b 5% & $x# {y} ~ ^ \\") == r"a\_b 5\% \& \$x\# \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}"


def test_every_cell_traces_to_its_jobs(tmp_path):
    frame = coco_frame(seeds=2)
    t = _by_stem(frame)["data-x-method-detection-synthetic-scenes-bbox_AP"]
    prov = provenance_frame(t, frame, commits={j: "abc123" for j in frame["job_id"]})
    assert len(prov) == len(t.cells)
    for _, line in prov.iterrows():
        jobs = line["job_ids"].split()
        rows = frame[frame["job_id"].isin(jobs) & (frame["metric"] == "bbox_AP")]
        assert len(rows) == line["n"] == len(jobs)
        assert rows["value"].mean() == pytest.approx(line["mean"])
        assert set(line["upstream_job_ids"].split()) == set(rows["upstream"])
        assert line["git_commits"] == "abc123"
    written = write_tables(frame, tmp_path / "tables")
    names = {p.name for p in written}
    assert "data-x-method-detection-synthetic-scenes-bbox_AP.provenance.csv" in names
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    csv = pd.read_csv(tmp_path / "tables" / "data-x-method-detection-synthetic-scenes-bbox_AP.csv", index_col=0)
    assert csv.loc["synthetic-scenes", "SplitMask"] == t.text("synthetic-scenes", "SplitMask")


def test_training_losses_and_pretraining_rows_stay_out_of_tables():
    b = FrameBuilder("x")
    b.add("beit", "synthetic-objects", "finetune", "synthetic-objects", {"top1": 50.0, "train_loss": 1.0})
    f = b.frame()
    pre = f.iloc[[0]].assign(stage="pretrain", metric="pretrain_loss", split="train", task=None, task_dataset=None)
    tables = study_tables(pd.concat([f, pre], ignore_index=True))
    assert [t.columns for t in tables] == [["top1"]]


def test_cells_pooling_one_seed_twice_are_flagged(tmp_path):
    b = FrameBuilder("coco")
    b.add("none", None, "detection", "synthetic-scenes", {"bbox_AP": 20.0})
    b.add("none", None, "detection", "synthetic-scenes", {"bbox_AP": 22.0})  # same coordinates, same seed
    frame = b.frame()
    frame.loc[1, "job_id"] += "-other-schedule"
    (t,) = study_tables(frame)
    assert t.warnings and "-other-schedule" in t.warnings[0]
    write_tables(frame, tmp_path)
    assert "warning" in (tmp_path / "summary-detection-synthetic-scenes.md").read_text()


def test_latex_escapes_names_with_underscores():
    b = FrameBuilder("x")
    b.add_seeds("beit", "domainnet_sketch", "linear_probe", "domainnet_sketch", "top1", [50.0, 51.0])
    b.add_seeds("beit", "imagenet", "linear_probe", "domainnet_sketch", "top1", [52.0, 53.0])
    tex = to_latex(_by_stem(b.frame())["data-x-method-linear_probe-domainnet_sketch-top1"])
    assert r"linear\_probe" in tex and r"domainnet\_sketch & " in tex
    assert r"\label{tab:data-x-method-linear-probe-domainnet-sketch-top1}" in tex


def test_evaluation_splits_are_never_averaged():
    b = FrameBuilder("x")
    b.add_seeds("beit", "imagenet", "finetune", "imagenet", "top1", [50.0, 52.0])
    f = b.frame()
    test_split = f.assign(split="test", value=f["value"] + 10)
    (t,) = study_tables(pd.concat([f, test_split], ignore_index=True))
    assert t.columns == ["top1@test", "top1@val"] or t.columns == ["top1@val", "top1@test"]
    assert t.text(t.rows[0], "top1@val") == "51.00 ± 1.41 (2)" and t.text(t.rows[0], "top1@test") == "61.00 ± 1.41 (2)"
