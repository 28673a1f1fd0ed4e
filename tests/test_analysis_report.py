"""Figures and the HTML report from fixture frames (never under results/); the analysis package stays free of torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from analysis.figures import write_figures
from analysis.provenance import commits, environments
from analysis.report import write_report
from tests.analysis_frames import FrameBuilder, coco_frame, fractions_frame


def test_figures_written_as_png_and_pdf(tmp_path):
    written = write_figures(fractions_frame(seeds=2), tmp_path)
    assert {p.name for p in written} == {"fractions-finetune-synthetic-objects-top1.png",
                                         "fractions-finetune-synthetic-objects-top1.pdf"}
    png, pdf = sorted(written, key=lambda p: p.suffix, reverse=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    bars = write_figures(coco_frame(seeds=2), tmp_path / "coco")
    assert {p.stem for p in bars} == {"bars-detection-synthetic-scenes-bbox_AP", "bars-detection-synthetic-scenes-segm_AP"}


def test_epochs_figure(tmp_path):
    b = FrameBuilder("long-schedule")
    for e, v in ((4, 50.0), (12, 55.0), (36, 54.0)):
        b.add_seeds("beit", "synthetic-fine", "finetune", "synthetic-fine", "top1", [v, v + 0.2], epochs=e)
    assert {p.name for p in write_figures(b.frame(), tmp_path)} == {"epochs-finetune-synthetic-fine-top1.png",
                                                                      "epochs-finetune-synthetic-fine-top1.pdf"}


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.scripts, self.images = [], 0, []

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.refs += [v for k, v in attrs if k in ("src", "href")]
        self.images += [v for k, v in attrs if tag == "img" and k == "src"]


def test_html_page_is_offline_and_references_existing_files(tmp_path):
    study_dir = tmp_path / "coco"
    frame = coco_frame(seeds=2)
    job = frame["job_id"].iloc[0]
    (study_dir / job).mkdir(parents=True)
    (study_dir / job / "env.json").write_text(json.dumps({"git": {"commit": "0123456789abcdef", "dirty": True},
                                                          "host": "node7", "python": "3.11", "packages": {"torch": "2"}}))
    for job_id in frame["job_id"].unique():  # the random init's longer detection schedule, as in studies/coco.yaml
        epochs = 18 if "-none-" in job_id else 6
        (study_dir / job_id).mkdir(parents=True, exist_ok=True)
        (study_dir / job_id / "spec.json").write_text(json.dumps({"config": {"params": {"epochs": epochs, "lr": 1}}}))
    written = write_report(frame, study_dir, scale="tiny")
    page = study_dir / "report.html"
    assert page in written
    text = page.read_text()
    parser = _Refs()
    parser.feed(text)
    assert parser.scripts == 0 and not re.search(r"https?://", text)
    assert any(r.startswith("figures/") and r.endswith(".png") for r in parser.refs)
    assert any(r.startswith("tables/") and r.endswith(".tex") for r in parser.refs)
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)  # embedded
    for ref in parser.refs:
        if not ref.startswith(("data:", "#")):
            assert (study_dir / ref).is_file(), ref
    assert "epochs=18" in text and "epochs=6" in text and "lr=1" not in text  # only parameters that differ
    assert "coco-splitmask-beats-beit-box" in text and "paper: +0.6" in text   # claims with verdicts
    assert job in text and "0123456789abcdef" in text and "node7" in text     # plan and provenance
    assert all(f"<td>{up}</td><td>pretrain</td>" in text for up in frame["upstream"].unique())  # silent pre-training jobs
    prov = (study_dir / "tables" / "summary-detection-synthetic-scenes.provenance.csv").read_text()
    assert "0123456789ab+dirty" in prov


def test_provenance_recorded_in_the_results_needs_no_env_json(tmp_path):
    frame = coco_frame(seeds=2)
    recorded = frame["job_id"] == frame["job_id"].iloc[0]
    for column, value in {"git_commit": "fedcba9876543210", "git_dirty": False, "host": "node3", "python": "3.12",
                          "packages": "torch 2"}.items():
        frame[column] = pd.Series(value, index=frame.index, dtype=object).where(recorded, None)
    older = frame.loc[~recorded, "job_id"].iloc[0]  # results written before jobs recorded it: env.json is read
    (tmp_path / older).mkdir(parents=True)
    (tmp_path / older / "env.json").write_text(json.dumps({"git": {"commit": "0123456789abcdef", "dirty": True},
                                                           "host": "node7", "python": "3.11"}))
    envs = environments(tmp_path, frame["job_id"].drop_duplicates(), frame)
    by_job = envs.set_index("job_id")
    assert list(envs["job_id"]) == list(frame["job_id"].drop_duplicates())
    assert by_job.loc[frame["job_id"].iloc[0], ["git_commit", "host"]].tolist() == ["fedcba9876543210", "node3"]
    assert by_job.loc[older, ["git_commit", "host"]].tolist() == ["0123456789abcdef", "node7"]
    assert commits(envs)[frame["job_id"].iloc[0]] == "fedcba987654" and commits(envs)[older] == "0123456789ab+dirty"
    write_report(frame, tmp_path, scale="tiny", what=("html",))
    text = (tmp_path / "report.html").read_text()
    assert "fedcba9876543210" in text and "node3" in text and "node7" in text


def test_scales_are_never_pooled(tmp_path):
    frame = fractions_frame(seeds=2)
    both = frame.__class__(list(frame.to_dict("records")) + [dict(r, scale="paper") for r in frame.to_dict("records")])
    written = write_report(both, tmp_path, what=("tables",))
    assert {p.parts[-3] for p in written} == {"tiny", "paper"}


def test_analysis_imports_no_torch():
    code = "import sys, analysis.report, analysis.claims, analysis.figures; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


def test_report_of_a_study_without_results(tmp_path):
    from harness.collect import COLUMNS
    import pandas as pd

    written = write_report(pd.DataFrame(columns=COLUMNS), tmp_path / "coco")
    assert tmp_path / "coco" / "report.html" in written
    claims = pd.read_csv(tmp_path / "coco" / "claims.csv")
    assert len(claims) > 0 and set(claims["verdict"]) == {"not enough data"}
