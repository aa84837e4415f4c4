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


# --- a folder: --image-dir and --out-dir ---------------------------------------------------------


def _folder_of_scans(fold, tmp_path) -> Path:
    """The two scans of the fold, a truncated NIfTI and a file that is no NIfTI."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("case0.nii.gz", "case1.nii.gz"):
        (folder / name).write_bytes((fold["root"] / "images" / name).read_bytes())
    whole = (fold["root"] / "images" / "case0.nii.gz").read_bytes()
    (folder / "broken.nii.gz").write_bytes(whole[: len(whole) // 3])
    (folder / "notes.txt").write_text("not a scan")
    return folder


def test_segment_a_folder_loads_the_model_once_and_skips_a_broken_file(fold, tmp_path, monkeypatch):
    import app.cli.segmentation as command

    loads = []
    real_load = command._load_predictor
    monkeypatch.setattr(command, "_load_predictor",
                        lambda *a, **k: loads.append(a) or real_load(*a, **k))  # fmt: skip
    folder, out = _folder_of_scans(fold, tmp_path), tmp_path / "out"
    result = runner.invoke(app, ["segment", "--image-dir", str(folder), "--out-dir", str(out),
                                 "--model", str(fold["model"]), "--data-dir",
                                 str(tmp_path / "var")])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert len(loads) == 1
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [
        "[1/3] broken.nii.gz",
        "[2/3] case0.nii.gz",
        "[3/3] case1.nii.gz",
    ]
    assert "failed, skipped" in lines[0] and "broken or truncated gzip data" in lines[0]
    assert "tumor(s)" in lines[1] and "tumor(s)" in lines[2] and "Traceback" not in result.output
    assert "2 of 3 segmented, 1 failed (broken.nii.gz)" in result.output
    for case in ("case0", "case1"):
        labels = load_label_nifti(out / f"{case}.nii.gz")
        source = load_label_nifti(fold["root"] / "labels" / f"{case}.nii.gz")
        assert labels.shape == source.shape and np.array_equal(labels.affine, source.affine)
        assert json.loads((out / f"{case}.json").read_text())["image"] == str(
            folder / f"{case}.nii.gz"
        )
        with (out / f"{case}_lesions.csv").open() as stream:
            assert next(csv.reader(stream))[:2] == ["index", "voxels"]
    assert not (out / "broken.nii.gz").exists() and not (out / "notes.nii.gz").exists()
    with (out / "summary.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["case"], row["status"]) for row in rows] == [
        ("broken", "failed"),
        ("case0", "ok"),
        ("case1", "ok"),
    ]
    assert rows[0]["error"] and rows[1]["tumors"] != ""


def test_segment_a_folder_gives_the_labels_of_single_runs(fold, tmp_path):
    folder, out = _folder_of_scans(fold, tmp_path), tmp_path / "out"
    (folder / "broken.nii.gz").unlink()
    result = runner.invoke(app, ["segment", "--image-dir", str(folder), "--out-dir", str(out),
                                 "--model", str(fold["model"]), "--mode", "parity"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 of 2 segmented ->" in result.output
    single, labels = _segment(fold, tmp_path, "--mode", "parity")
    assert single.exit_code == 0, single.output
    assert np.array_equal(
        load_label_nifti(labels).array, load_label_nifti(out / "case1.nii.gz").array
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--image-dir", "{scans}"], "--image-dir and --out-dir go together"),
        (["--image-dir", "{scans}", "--out-dir", "{scans}"], "--out-dir must not be --image-dir"),
        (["--image-dir", "{tmp}/nowhere", "--out-dir", "{tmp}/out"], "is not a folder"),
        (["--image-dir", "{empty}", "--out-dir", "{tmp}/out"], "no .nii or .nii.gz files in"),
        (
            ["--image-dir", "{scans}", "--out-dir", "{tmp}/out", "--image", "x.nii"],
            "leave out --image, --out-label and --lesions",
        ),
        ([], "give --image and --out-label (one CT), or --image-dir and --out-dir"),
    ],
)
def test_segment_folder_usage_errors_are_one_line_with_exit_code_2(fold, tmp_path, arguments,
                                                                     message):  # fmt: skip
    scans = _folder_of_scans(fold, tmp_path)
    (tmp_path / "empty").mkdir()
    places = {"scans": scans, "tmp": tmp_path, "empty": tmp_path / "empty"}
    filled = [argument.format(**places) for argument in arguments]
    result = runner.invoke(app, ["segment", "--model", str(fold["model"]), *filled])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
