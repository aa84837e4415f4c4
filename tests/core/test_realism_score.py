"""The realism harness on a small constructed case (issue 16, item 4)."""

import json

import numpy as np
import pytest

from syntumor_core.errors import ParameterError
from syntumor_core.realism import measure_lesions
from syntumor_core.realism.plots import save_gallery, save_histograms
from syntumor_core.realism.score import (
    STATISTICS,
    default_min_voxels,
    real_arm,
    score_realism,
)
from tests.realism_support import make_lesion_case

TYPES = ("small", "medium")


@pytest.fixture(scope="module")
def case():
    return make_lesion_case()


@pytest.fixture(scope="module")
def report(case):
    return score_realism(case, profile="paper", n_per_type=2, tumor_types=TYPES, min_voxels=50)


def test_real_arm_is_measure_lesions_of_the_case(case, report):
    expected = measure_lesions(case.image, case.label, spacing=case.spacing, min_voxels=50)
    assert report.real == tuple(expected)
    assert default_min_voxels(case) == expected[-1].voxels  # fewer than 15: the smallest


def test_synthetic_lesions_are_measured_and_compared(report):
    assert report.calls == 4 and report.failed_calls == 0
    assert report.synthetic and all(s.voxels >= 50 for s in report.synthetic)
    assert set(report.synthetic_types) <= set(TYPES)
    assert [c.statistic for c in report.comparisons] == [name for name, _ in STATISTICS]
    contrast = report.comparison("contrast_hu")
    assert contrast.n_real == 4 and 0 <= contrast.ks_p <= 1
    assert report.reader is not None and 0 <= report.reader.auc <= 1
    with pytest.raises(ParameterError, match="no statistic 'size'"):
        report.comparison("size")


def test_report_is_json_and_reproducible(case, report):
    record = report.to_dict()
    json.dumps(record, allow_nan=False)
    assert record["profile"] == "paper" and record["min_voxels"] == 50
    assert len(record["synthetic_lesions"]) == len(report.synthetic)
    again = score_realism(
        case,
        profile="paper",
        n_per_type=2,
        tumor_types=TYPES,
        min_voxels=50,
        real=real_arm(case, min_voxels=50),
    )
    assert again.to_dict() == record


def test_inputs_unchanged(case):
    image, label = case.image.copy(), case.label.copy()
    score_realism(case, profile="realistic", n_per_type=1, tumor_types=("small",), reader=False)
    np.testing.assert_array_equal(case.image, image)
    np.testing.assert_array_equal(case.label, label)


def test_plots_are_written(report, tmp_path):
    histograms = save_histograms(report, tmp_path / "h.png")
    gallery = save_gallery(report, tmp_path / "g.png", per_row=4)
    for path in (histograms, gallery):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    real = [p for p in report.patches if p.source == "real"]
    assert real[0].image.shape == (64, 64) and real[0].lesion.any()


def test_bad_arguments(case):
    with pytest.raises(ParameterError, match="n_per_type"):
        score_realism(case, n_per_type=0)
    with pytest.raises(ParameterError, match="no lesion of ≥ 100000 voxels"):
        score_realism(case, n_per_type=1, min_voxels=100_000)


def test_report_folder_round_trip_and_table(report, tmp_path):
    from syntumor_core.errors import VolumeError
    from syntumor_core.realism.report import format_table, load_report_folder, save_report_folder

    assert load_report_folder(tmp_path) is None
    path = save_report_folder([report], tmp_path, plots=False, extra={"note": "x"})
    document = load_report_folder(tmp_path)
    assert document["note"] == "x" and document["reports"][0]["profile"] == "paper"
    table = format_table([report])
    assert table == format_table(document["reports"])
    assert "\npaper    contrast_hu (HU)  " in table and "paper: machine reader AUC" in table
    path.write_text('{"format": 99}')
    with pytest.raises(VolumeError, match="not a realism report of format 1"):
        load_report_folder(tmp_path)
