"""report.html in a real browser: headless Chromium renders it (not blank), every image decodes, every job is
listed with its state, and the training curves are there. Skips where no Chromium is installed, unless
HARNESS_REQUIRE_CHROMIUM=1 (CI, where .ci/run installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from harness import results as R
from harness.collect import collect
from harness.launch import launch
from harness.plan import make_plan
from harness.spec import load_study
from tests.micro import write_micro

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if CHROMIUM is None and os.environ.get("HARNESS_REQUIRE_CHROMIUM") != "1":
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason="no chromium here (apt-get install -y chromium)")]

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  document.body.setAttribute("data-probe", JSON.stringify({images: imgs.length, broken: broken}));
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _study_with_every_state(tmp_path: Path) -> Path:
    os.environ["HARNESS_THREADS"] = "1"
    plan = make_plan(load_study(write_micro(tmp_path, methods=["none", "supervised"], fractions=[0.1])))
    root = tmp_path / "results"
    assert launch(plan, executor="debug", results_root=root).failed == []
    study_dir = root / "micro"
    failed = study_dir / "finetune.synobj-mae-synobj-f0.10-e3-s0-deadbeef"
    failed.mkdir()
    R.atomic_write_json(failed / R.FAILED, {"error": "Traceback ...\nFloatingPointError: loss is nan at update 7"})
    running = study_dir / "pre-mae-synobj-f0.10-e3-s0-cafef00d"
    running.mkdir()
    R.atomic_write_json(running / R.SUBMITTED, {"executor": "local", "pid": os.getpid()})
    R.atomic_write_json(running / R.SPEC, {"stage": "pretrain", "coords": {
        "method": "mae", "pretrain_dataset": "synthetic-objects", "fraction": 0.1, "epochs": 3, "seed": 0}})
    (running / "history.jsonl").write_text("".join(json.dumps({"kind": "train", "step": s, "total": 9, "loss": loss,
                                                               "time": float(s)}) + "\n"
                                                   for s, loss in ((2, 3.3), (4, 3.2))))
    from analysis.report import write_report

    write_report(collect(study_dir), study_dir)
    return study_dir / "report.html"


def test_report_renders_in_chromium_with_every_image_and_job_state(tmp_path):
    page = _study_with_every_state(tmp_path)
    text = page.read_text()
    assert "<script" not in text and not re.search(r'src="(?!data:)', text)  # self-contained
    assert "Training curves" in text and "standard deviation over" in text
    for state in ("done", "failed", "running"):
        assert f'class="{state}"' in text
    assert "FloatingPointError: loss is nan at update 7" in text and "update 4/9, loss 3.2" in text

    shot = Path(os.environ.get("HARNESS_SCREENSHOT", tmp_path / "shot.png"))
    run = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    image = Image.open(shot).convert("L")
    stat = ImageStat.Stat(image)
    dark = sum(image.histogram()[:200]) / (image.width * image.height)
    assert stat.stddev[0] > 10 and dark > 0.01, "the screenshot is blank"

    probe = page.with_name("probe.html")
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", "--virtual-time-budget=5000", probe.as_uri()).stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["images"] >= 3 and result["broken"] == []  # the cells' curves, MAE's running one included
    assert ">nan<" not in text and "nan on nan" not in text
    assert text.count('href="#curves-') >= 3  # jobs link to their cell's curves
