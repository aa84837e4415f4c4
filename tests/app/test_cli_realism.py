"""``syntumor realism`` on a small constructed case (issue 16)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import _register_command_groups, app
from syntumor_core.volume import Volume, save_nifti
from tests.realism_support import make_lesion_case

runner = CliRunner()
_register_command_groups()


@pytest.fixture(scope="module")
def case_files(tmp_path_factory) -> tuple[Path, Path]:
    case = make_lesion_case()
    folder = tmp_path_factory.mktemp("realism")
    affine = np.diag([*case.spacing, 1.0])
    image, label = folder / "ct.nii.gz", folder / "label.nii.gz"
    save_nifti(Volume(case.image, affine), image)
    save_nifti(Volume(case.label, affine.copy()), label)
    return image, label


def _run(case_files, *extra: str):
    image, label = case_files
    arguments = ["realism", "--image", str(image), "--label", str(label)]
    return runner.invoke(app, [*arguments, "--n", "1", "--type", "small", *extra])


def test_prints_the_table_per_profile_and_writes_the_report(case_files, tmp_path):
    result = _run(case_files, "--min-voxels", "50", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    for profile in ("paper", "realistic"):
        assert re.search(rf"^{profile} +contrast_hu \(HU\) ", result.output, re.MULTILINE)
        assert f"{profile}: machine reader" in result.output
    assert "ct.nii.gz: 4 real lesions ≥ 50 voxels; 1 call(s) per type, seed 0" in result.output
    document = json.loads((tmp_path / "out" / "realism.json").read_text())
    assert [r["profile"] for r in document["reports"]] == ["paper", "realistic"]
    assert document["command"] == {
        "n": 1,
        "seed": 0,
        "profiles": ["paper", "realistic"],
        "min_voxels": 50,
    }
    for report in document["reports"]:
        for name in report["plots"].values():
            assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_publish_writes_to_the_data_folder(case_files, tmp_path):
    result = _run(case_files, "--profile", "paper", "--publish", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "realism" / "realism.json").read_text())
    assert [r["profile"] for r in document["reports"]] == ["paper"]
    assert document["reports"][0]["min_voxels"] == min(
        lesion["voxels"] for lesion in document["reports"][0]["real_lesions"]
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--profile", "fancy"], "error: --profile 'fancy' is not a profile; choose from"),
        (["--image", "ct.nii.gz"], "error: give --image and --label together"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(arguments, message):
    result = runner.invoke(app, ["realism", *arguments])
    assert result.exit_code == 2
    assert result.output.strip().startswith(message)
