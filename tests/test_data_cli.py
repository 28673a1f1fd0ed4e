"""``harness data list | prepare | show``."""

from __future__ import annotations

import pytest
from PIL import Image

from harness.cli import main


def test_list_shows_every_dataset_and_where(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_DATA_COCO", str(tmp_path / "gone"))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("imagenet", "coco", "ade20k", "inat2019", "stanford-cars", "domainnet-sketch",
                 "synthetic-objects", "synthetic-scenes", "synthetic-segmentation", "synthetic-fine"):
        assert name in out
    assert "HARNESS_DATA_IMAGENET" in out and "(MISSING)" in out


def test_prepare_then_list_reports_sizes(capsys):
    assert main(["data", "prepare", "synthetic-fine"]) == 0
    assert "train: 1200 images, 24 classes" in capsys.readouterr().out
    main(["data", "list"])
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("synthetic-fine "))
    assert "train 1200, 24 classes; val 480, 24 classes" in line


def test_prepare_unconfigured_dataset_is_one_error_line(capsys):
    assert main(["data", "prepare", "ade20k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'ade20k' has no root") and "ADEChallengeData2016" in err


@pytest.mark.parametrize("name", ["synthetic-objects", "synthetic-scenes", "synthetic-segmentation"])
def test_show_writes_a_contact_sheet(tmp_path, name):
    out = tmp_path / "sheet.png"
    assert main(["data", "show", name, "--split", "val", "--count", "4", "--out", str(out)]) == 0
    with Image.open(out) as img:
        assert img.width > 300 and img.height > 150
