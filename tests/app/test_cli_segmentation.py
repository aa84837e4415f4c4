"""``syntumor segment`` and ``syntumor evaluate`` on tiny synthetic scans with a random U-Net."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from typer.testing import CliRunner

from app.cli import app
from app.cli.segmentation import DEFAULT_REFINE_MARGIN, register
from syntumor_core.checkpoints import save_checkpoint
from syntumor_core.metrics import evaluate_case
from syntumor_core.models import build_model
from syntumor_core.volume import Volume, load_label_nifti, save_nifti

runner = CliRunner()
register(app)
register(app)  # a second call changes nothing


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scan(seed: int, affine: np.ndarray) -> tuple[Volume, Volume]:
    """A small CT (48 x 40 x 24 voxels) with a liver-bright block and a darker tumor in it."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((48, 40, 24), dtype=np.uint8)
    labels[8:40, 6:34, 4:20] = 1
    labels[18:26, 14:22, 9:15] = 2
    image = np.where(labels == 1, 110.0, np.where(labels == 2, 50.0, -100.0))
    image = (image + rng.normal(0, 10, labels.shape)).astype(np.float32)
    return Volume(image, affine), Volume(labels, affine)


@pytest.fixture(scope="module")
def fold(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("segmentation")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    affines = [np.diag([1.5, 1.5, 2.0, 1.0]), np.array([[0.0, -1.5, 0, 30], [-1.5, 0, 0, 20],
                                                        [0, 0, 2.0, -10], [0, 0, 0, 1]])]  # fmt: skip
    entries = []
    for index, affine in enumerate(affines):
        image, label = _scan(index, affine)
        name = f"case{index}"
        save_nifti(image, root / "images" / f"{name}.nii.gz")
        save_nifti(label, root / "labels" / f"{name}.nii.gz")
        entries.append({"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz"})
    data = root / "fold.json"
    data.write_text(json.dumps({"training": entries[:1], "validation": entries, "labels": {}}))
    other = root / "other.json"
    other.write_text(json.dumps({"training": entries, "validation": entries[1:]}))
    torch.manual_seed(0)
    model = save_checkpoint(root / "model.pt", build_model("unet"), arch="unet", epoch=1,
                            best_acc=0.0)  # fmt: skip
    return {"root": root, "data": data, "other": other, "model": model}


def _segment(fold, tmp_path, *extra: str):
    out = tmp_path / "seg.nii.gz"
    arguments = ["segment", "--image", str(fold["root"] / "images" / "case1.nii.gz"),
                 "--model", str(fold["model"]), "--out-label", str(out),
                 "--data-dir", str(tmp_path / "var"), *extra]  # fmt: skip
    return runner.invoke(app, arguments), out


def test_segment_writes_labels_on_the_input_grid_and_a_lesion_table(fold, tmp_path):
    lesions = tmp_path / "lesions.json"
    result, out = _segment(fold, tmp_path, "--lesions", str(lesions))
    assert result.exit_code == 0, result.output
    labels = load_label_nifti(out)
    source = load_label_nifti(fold["root"] / "labels" / "case1.nii.gz")
    assert labels.shape == source.shape and np.array_equal(labels.affine, source.affine)
    assert set(np.unique(labels.array)) <= {0, 1, 2}
    table = json.loads(lesions.read_text())
    assert table["arch"] == "unet" and table["mode"] == "fast" and len(table["sha256"]) == 64
    _, components = ndimage.label(labels.array == 2, structure=np.ones((3, 3, 3)))
    assert len(table["lesions"]) == components
    voxels = [row["voxels"] for row in table["lesions"]]
    assert voxels == sorted(voxels, reverse=True) and sum(voxels) == np.sum(labels.array == 2)
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["checkpoint"] == str(fold["model"]) and sidecar["seconds"] > 0
    assert "tumor(s)" in result.output


def test_segment_writes_csv_lesions_in_parity_mode(fold, tmp_path):
    lesions = tmp_path / "lesions.csv"
    result, _ = _segment(fold, tmp_path, "--lesions", str(lesions), "--mode", "parity")
    assert result.exit_code == 0, result.output
    with lesions.open() as stream:
        header = next(csv.reader(stream))
    assert header[:3] == ["index", "voxels", "volume_ml"] and "centroid_mm_x" in header
    assert json.loads((tmp_path / "seg.json").read_text())["mode"] == "parity"


def test_segment_refine_and_compile_options_reach_the_segmenter_and_the_sidecar(fold, tmp_path):
    from syntumor_core.segmentation import REFINE_MARGIN

    assert DEFAULT_REFINE_MARGIN == REFINE_MARGIN
    refined, out = _segment(fold, tmp_path, "--no-compile")
    assert refined.exit_code == 0, refined.output
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["refine_margin"] == REFINE_MARGIN and sidecar["compiled"] is False
    labels = load_label_nifti(out).array
    full, out = _segment(fold, tmp_path, "--refine-margin", "-1", "--no-compile")
    assert full.exit_code == 0, full.output
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["refine_margin"] is None
    # a random U-Net is in doubt everywhere, so every window is refined: the same labels
    assert np.array_equal(load_label_nifti(out).array, labels)
    result, _ = _segment(fold, tmp_path, "--mode", "parity")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["refine_margin"] is None and sidecar["compiled"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "slow"], "mode must be one of fast, parity"),
        (["--refine-margin", "inf"], "refine_margin must be a logit margin"),
        (["--mode", "parity", "--compile"], "compile needs fast mode"),
        (["--lesions", "table.txt"], "--lesions must end in .json or .csv"),
        (["--arch", "unte"], "unte"),
    ],
)
def test_segment_bad_usage_is_one_line_with_exit_code_2(fold, tmp_path, extra, message):
    result, _ = _segment(fold, tmp_path, *extra)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_segment_unknown_model_name_fails_cleanly(tmp_path, fold):
    arguments = ["segment", "--image", str(fold["root"] / "images" / "case0.nii.gz"), "--model",
                 "no_such_model", "--out-label", str(tmp_path / "seg.nii.gz"), "--data-dir",
                 str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2 and result.output.startswith("error:")


def _evaluate(fold, out: Path, *extra: str):
    arguments = ["evaluate", "--data", str(fold["data"]), "--root", str(fold["root"]),
                 "--model", str(fold["model"]), "--out", str(out), *extra]  # fmt: skip
    return runner.invoke(app, arguments)


def test_evaluate_scores_every_case_and_warns_about_selection_overlap(fold, tmp_path):
    out = tmp_path / "eval"
    result = _evaluate(fold, out)
    assert result.exit_code == 0, result.output
    assert (
        "warning: 2 of 2 evaluated cases were also used to select the checkpoint" in result.output
    )
    with (out / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["name"] for row in rows] == ["case0", "case1"]
    assert list(rows[0])[:5] == ["name", "liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"]
    assert "detected_0to5mm" in rows[0]
    for row in rows:  # the CSV holds the scores of the saved predictions
        prediction = load_label_nifti(out / "predictions" / f"{row['name']}.nii.gz")
        truth = load_label_nifti(fold["root"] / "labels" / f"{row['name']}.nii.gz")
        assert np.array_equal(prediction.affine, truth.affine)
        expected = evaluate_case(prediction.array, truth.array, truth.spacing)
        for column in ("liver_dice", "tumor_dice", "liver_nsd"):
            assert math.isclose(float(row[column]), expected[column], rel_tol=1e-9) or (
                math.isnan(float(row[column])) and math.isnan(expected[column])
            )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["cases"] == 2 and summary["detection"]["scans"] == 2
    assert summary["checkpoint_selection"]["overlapping_cases"] == ["case0", "case1"]
    assert "NaN" in summary["scoring"]["empty_cases"]
    dice = [float(row["liver_dice"]) for row in rows]
    assert summary["means"]["liver_dice"]["mean"] == pytest.approx(np.mean(dice))


def test_evaluate_with_other_selection_data_reports_only_the_shared_cases(fold, tmp_path):
    out = tmp_path / "eval"
    result = _evaluate(fold, out, "--selection-data", str(fold["other"]), "--split", "training")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["split"] == "training" and summary["data"]["cases"] == 1
    assert summary["checkpoint_selection"]["overlapping_cases"] == []
    assert "warning" not in result.output


def test_evaluate_missing_split_is_a_clear_error(fold, tmp_path):
    result = _evaluate(fold, tmp_path / "eval", "--split", "test")
    assert result.exit_code == 2
    assert "no list 'test'" in result.output and "validation" in result.output


def test_segment_lesion_filter_options_reach_the_labels_and_the_sidecar(fold, tmp_path):
    from app.cli.segmentation import DEFAULT_MIN_LESION_MM3
    from syntumor_core.segmentation import DEFAULT_MIN_LESION_MM3 as CORE_DEFAULT

    assert DEFAULT_MIN_LESION_MM3 == CORE_DEFAULT
    kept, out = _segment(fold, tmp_path, "--min-lesion-mm3", "0", "--no-organ-contact")
    assert kept.exit_code == 0, kept.output
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["lesion_filter"] == {"min_volume_mm3": 0.0, "min_volume_ml": 0.0,
                                        "organ_contact": False, "tumor_probability": None}  # fmt: skip
    assert sidecar["lesion_filter_removed"]["removed_small"] == 0
    unfiltered = load_label_nifti(out).array
    dropped, out = _segment(fold, tmp_path, "--min-lesion-mm3", "1e9", "--tumor-probability", "0.4")
    assert dropped.exit_code == 0, dropped.output
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["lesion_filter"]["organ_contact"] is True
    assert sidecar["lesion_filter"]["tumor_probability"] == 0.4
    assert not (load_label_nifti(out).array == 2).any()
    assert sidecar["lesion_filter_removed"]["lesions_in"] == (
        sidecar["lesion_filter_removed"]["removed_small"]
        + sidecar["lesion_filter_removed"]["removed_outside_organ"]
    )
    assert "0 tumor(s)" in dropped.output and unfiltered.shape == load_label_nifti(out).shape
    bad, _ = _segment(fold, tmp_path, "--tumor-probability", "1.5")
    assert bad.exit_code == 2 and "tumor_probability must be in (0, 1)" in bad.output
