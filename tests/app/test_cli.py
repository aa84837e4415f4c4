"""The ``syntumor`` command line: phantom → synthesize → replay, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from syntumor_core.volume import load_label_nifti, load_nifti

runner = CliRunner()


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    image, labels = folder / "ct.nii.gz", folder / "organs.nii.gz"
    result = runner.invoke(
        app,
        [
            "phantom",
            "--seed",
            "1",
            "--shape",
            "96,96,64",
            "--spacing",
            "4",
            "--out-image",
            str(image),
            "--out-label",
            str(labels),
        ],
    )
    assert result.exit_code == 0, result.output
    return image, labels


def test_every_command_has_help():
    for command in ([], ["phantom"], ["synthesize"], ["sample"], ["sample", "lits117"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_phantom_writes_ct_and_labels(phantom_files):
    image, labels = phantom_files
    ct, organs = load_nifti(image), load_label_nifti(labels)
    assert ct.shape == (96, 96, 64) and ct.spacing == (4.0, 4.0, 4.0)
    assert np.array_equal(ct.affine, organs.affine)
    assert {1, 2, 3, 4, 5} <= set(np.unique(organs.array).tolist())


def test_synthesize_then_replay_is_bit_identical(phantom_files, tmp_path):
    image, labels = phantom_files
    out, label, manifest = tmp_path / "out.nii.gz", tmp_path / "label.nii.gz", tmp_path / "m.json"
    args = [
        "synthesize",
        "--image",
        str(image),
        "--mask",
        str(labels),
        "--mask-label",
        "1",
        "--organ",
        "liver",
        "--type",
        "small",
        "--profile",
        "paper",
        "--seed",
        "7",
        "--out-image",
        str(out),
        "--out-label",
        str(label),
        "--manifest",
        str(manifest),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(manifest.read_text())
    assert record["seed"] == 7 and record["source"]["mask_labels"] == [1]
    tumor = load_label_nifti(label).array
    assert set(np.unique(tumor).tolist()) == {0, 1, 2}
    organ = load_label_nifti(labels).array == 1
    assert not ((tumor == 2) & ~organ).any()

    again = tmp_path / "again.nii.gz"
    result = runner.invoke(
        app,
        [
            "synthesize",
            "--replay",
            str(manifest),
            "--image",
            str(image),
            "--mask",
            str(labels),
            "--out-image",
            str(again),
        ],
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(load_nifti(out).array, load_nifti(again).array)


def test_protect_label_keeps_those_voxels_and_travels_in_the_manifest(phantom_files, tmp_path):
    """--protect-label: voxels of that label are never changed or labelled tumor; the replay
    reads the labels back from the manifest."""
    from syntumor_core.volume import Volume, save_nifti

    image, labels = phantom_files
    organs = load_label_nifti(labels)
    array = np.array(organs.array)
    liver = array == 1
    lesion = np.zeros_like(liver)
    lesion[30:60, 30:60, 20:44] = True
    array[liver & lesion] = 9  # a "real lesion" inside the liver
    relabelled = tmp_path / "relabelled.nii.gz"
    save_nifti(Volume(array, organs.affine), relabelled)
    out, label, manifest = tmp_path / "out.nii.gz", tmp_path / "label.nii.gz", tmp_path / "m.json"
    common = ["--image", str(image), "--mask", str(relabelled)]
    result = runner.invoke(
        app,
        ["synthesize", *common, "--mask-label", "1", "--protect-label", "9", "--type", "medium"]
        + ["--profile", "realistic", "--seed", "3", "--out-image", str(out)]
        + ["--out-label", str(label), "--manifest", str(manifest)],
    )
    assert result.exit_code == 0, result.output
    protected = array == 9
    assert protected.any()
    before, after = load_nifti(image).array, load_nifti(out).array
    assert np.array_equal(after[protected], before[protected])
    assert not (load_label_nifti(label).array[protected] == 2).any()
    assert json.loads(manifest.read_text())["source"]["protect_labels"] == [9]
    again = tmp_path / "again.nii.gz"
    result = runner.invoke(
        app, ["synthesize", "--replay", str(manifest), *common, "--out-image", str(again)]
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(load_nifti(again).array, after)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mask-label", "9"], "has no voxel with label [9]"),
        (["--mask-label", "1", "--organ", "lung"], "unknown organ 'lung'"),
        (["--mask-label", "1", "--type", "hgue"], "unknown tumor type 'hgue'"),
        (["--mask-label", "1", "--profile", "papr"], "did you mean 'paper'"),
        (["--mask-label", "5", "--type", "large"], "too small for tumor type 'large'"),
    ],
)
def test_bad_usage_exits_2_with_one_line(phantom_files, tmp_path, extra, message):
    image, labels = phantom_files
    result = runner.invoke(
        app,
        [
            "synthesize",
            "--image",
            str(image),
            "--mask",
            str(labels),
            "--out-image",
            str(tmp_path / "x.nii.gz"),
            *extra,
        ],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "x.nii.gz").exists()


def test_unreadable_file_from_the_real_console_script(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 definitely not a gzip stream")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "synthesize",
            "--image",
            str(broken),
            "--mask",
            str(broken),
            "--out-image",
            str(tmp_path / "x.nii.gz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "broken.nii.gz" in done.stderr
    assert "Traceback" not in done.stderr


def test_synthesize_at_points_puts_one_tumor_at_each(phantom_files, tmp_path):
    from scipy import ndimage

    image, labels = phantom_files
    liver = load_label_nifti(labels).array == 1
    depth = ndimage.distance_transform_edt(liver, sampling=(4.0, 4.0, 4.0))
    deep = np.argwhere(depth >= 12)
    first = deep[0]
    second = next(p for p in deep if np.linalg.norm((p - first) * 4.0) > 40)
    out, label, manifest = tmp_path / "out.nii.gz", tmp_path / "label.nii.gz", tmp_path / "m.json"
    points = [",".join(str(int(v)) for v in p) for p in (first, second)]
    result = runner.invoke(
        app,
        ["synthesize", "--image", str(image), "--mask", str(labels), "--mask-label", "1",
         "--type", "small", "--seed", "2", "--at", points[0], "--at", points[1],
         "--radius-mm", "8", "--out-image", str(out), "--out-label", str(label),
         "--manifest", str(manifest)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tumors = load_label_nifti(label).array == 2
    components, count = ndimage.label(tumors, structure=np.ones((3, 3, 3)))
    assert count == 2
    centres = ndimage.center_of_mass(tumors, components, [1, 2])
    for point in (first, second):
        assert min(np.linalg.norm((np.array(c) - point) * 4.0) for c in centres) <= 4.0 * 3**0.5
    assert json.loads(manifest.read_text())["source"]["centers"] == [list(map(int, first)),
                                                                    list(map(int, second))]  # fmt: skip
    again = tmp_path / "again.nii.gz"
    result = runner.invoke(app, ["synthesize", "--replay", str(manifest), "--image", str(image),
                                 "--mask", str(labels), "--out-image", str(again)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.array_equal(load_nifti(again).array, load_nifti(out).array)
    outside = ",".join(str(int(v)) for v in np.argwhere(~liver)[0])
    result = runner.invoke(app, ["synthesize", "--image", str(image), "--mask", str(labels),
                                 "--at", outside, "--out-image", str(tmp_path / "x.nii.gz")])  # fmt: skip
    assert result.exit_code == 2
    assert "is not inside the liver mask" in result.output
