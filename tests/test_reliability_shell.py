"""No value reaches the sbatch script's shell unquoted: the job name comes from a validated slug, and every
exported path is quoted, so a value made of shell syntax is data, never a command."""

from __future__ import annotations

import subprocess

import pytest

from harness.launch.profiles import load_profile
from harness.launch.slurm import setup_lines, slurm_parameters
from harness.spec import Resources, load_study
from tests.micro import write_micro


@pytest.mark.parametrize("value", ["$(touch {marker})", "x\ntouch {marker}", "a b; touch {marker}", "`touch {marker}`"])
def test_exported_values_are_data_not_commands(tmp_path, monkeypatch, value):
    marker = tmp_path / "ran"
    evil = str(tmp_path / value.format(marker=marker))
    monkeypatch.setenv("HARNESS_DATA_EVIL", evil)
    lines = [ln for ln in setup_lines(load_profile("ci")) if "HARNESS_DATA_EVIL" in ln]
    out = subprocess.run(["bash", "-c", "\n".join(lines) + '\nprintf %s "$HARNESS_DATA_EVIL"'],
                         capture_output=True, text=True, check=True)
    assert out.stdout == evil and not marker.exists()


def test_slurm_job_name_is_the_study_slug_and_stage(tmp_path):
    import submitit.slurm.slurm as S

    study = load_study(write_micro(tmp_path))
    params = slurm_parameters(Resources(), load_profile("ci"))
    script = S._make_sbatch_string(command="python -m x", folder=tmp_path, job_name=f"{study.name}-pretrain",
                                   setup=params["slurm_setup"], time=5)
    assert "#SBATCH --job-name=micro-pretrain\n" in script
