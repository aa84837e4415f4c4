"""Tests of syntumor_core.metrics: Dice, NSD, lesion-wise detection and per-case rows."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from monai.metrics import compute_surface_dice
from sklearn.metrics import f1_score

from syntumor_core.errors import MaskError, ParameterError
from syntumor_core.metrics import (
    SIZE_BINS_MM,
    DetectionResult,
    dice,
    equivalent_radius_mm,
    evaluate_case,
    lesion_detection,
    nsd,
    size_bin_index,
    size_bin_name,
    summarize_detection,
)


def ball(shape, center, radius_vox) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    squared = sum((grid[axis] - center[axis]) ** 2 for axis in range(len(shape)))
    return squared <= radius_vox**2


def cube(shape, corner, side) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + side) for c in corner)] = True
    return mask


def monai_nsd_uncropped(pred, truth, spacing, tolerance, use_subvoxels) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = compute_surface_dice(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(truth)[None, None],
            class_thresholds=[tolerance],
            include_background=True,
            spacing=list(spacing),
            use_subvoxels=use_subvoxels,
        )
    return float(score.reshape(-1)[0])


# --- Dice -----------------------------------------------------------------------------------


def test_dice_of_two_3x3x3_cubes_offset_by_one_voxel_is_two_thirds():
    truth = cube((7, 7, 7), (2, 2, 2), 3)
    pred = cube((7, 7, 7), (3, 2, 2), 3)  # overlap 2*3*3 = 18 of 27 + 27 voxels
    assert dice(pred, truth) == pytest.approx(2 * 18 / 54)
    diagonal = cube((7, 7, 7), (3, 3, 3), 3)  # overlap 2*2*2 = 8
    assert dice(diagonal, truth) == pytest.approx(16 / 54)


def test_dice_matches_sklearn_f1_on_random_masks(rng):
    for density in (0.05, 0.3, 0.7):
        pred = rng.random((9, 10, 11)) < density
        truth = rng.random((9, 10, 11)) < density
        expected = f1_score(truth.ravel(), pred.ravel())
        assert dice(pred, truth) == pytest.approx(expected, abs=1e-12)
        assert dice(pred.astype(np.uint8), truth.astype(np.int64)) == pytest.approx(expected)


def test_dice_empty_masks():
    empty = np.zeros((4, 4, 4), bool)
    full = cube((4, 4, 4), (1, 1, 1), 2)
    assert math.isnan(dice(empty, empty))
    assert dice(empty, empty, empty_value=1.0) == 1.0
    assert dice(full, empty) == 0.0
    assert dice(empty, full, empty_value=1.0) == 0.0


def test_dice_refuses_label_maps_and_shape_mismatch():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1, 1, 1] = 2
    with pytest.raises(MaskError, match=r"pred must be binary.*\[2\]"):
        dice(labels, labels > 0)
    with pytest.raises(MaskError, match=r"same shape.*\(4, 4, 4\) and \(4, 4, 5\)"):
        dice(labels > 0, np.zeros((4, 4, 5), bool))


# --- NSD ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_subvoxels", [True, False])
def test_nsd_of_sphere_shifted_within_and_far_beyond_tolerance(use_subvoxels):
    shape = (32, 32, 32)
    sphere = ball(shape, (12, 16, 16), 6)
    options = {"tolerance_mm": 2.0, "use_subvoxels": use_subvoxels}
    assert nsd(sphere, sphere, (1, 1, 1), **options) == pytest.approx(1.0)
    shifted_one = np.roll(sphere, 1, axis=0)
    assert nsd(shifted_one, sphere, (1, 1, 1), **options) == pytest.approx(1.0)
    shifted_far = np.roll(sphere, 9, axis=0)
    assert nsd(shifted_far, sphere, (1, 1, 1), **options) < 0.5


@pytest.mark.parametrize("use_subvoxels", [True, False])
def test_nsd_follows_the_spacing_of_the_shifted_axis(use_subvoxels):
    sphere = ball((30, 24, 24), (12, 12, 12), 6)
    shifted = np.roll(sphere, 2, axis=0)  # 2 voxels along axis 0
    options = {"tolerance_mm": 2.0, "use_subvoxels": use_subvoxels}
    assert nsd(shifted, sphere, (1.0, 1.0, 1.0), **options) == pytest.approx(1.0)
    # coarse in-plane spacing does not matter for a shift along axis 0 ...
    assert nsd(shifted, sphere, (1.0, 3.0, 3.0), **options) == pytest.approx(1.0)
    # ... but 3 mm along axis 0 makes the shift 6 mm, beyond the tolerance
    coarse = nsd(shifted, sphere, (3.0, 1.0, 1.0), **options)
    assert coarse < 0.9
    # and a tolerance wider than 6 mm accepts it again
    assert nsd(shifted, sphere, (3.0, 1.0, 1.0), tolerance_mm=6.5) == pytest.approx(1.0)


def test_nsd_of_two_single_voxels_by_hand():
    first = np.zeros((3, 3, 12), bool)
    second = np.zeros((3, 3, 12), bool)
    first[1, 1, 2] = True
    second[1, 1, 7] = True  # 5 voxels apart
    for use_subvoxels in (True, False):
        options = {"tolerance_mm": 2.0, "use_subvoxels": use_subvoxels}
        assert nsd(first, second, (1, 1, 1), **options) == 0.0
        assert nsd(first, second, (1, 1, 0.25), **options) == pytest.approx(1.0)  # 1.25 mm


@pytest.mark.parametrize("use_subvoxels", [True, False])
@pytest.mark.parametrize("at_border", [False, True])
def test_nsd_crop_agrees_with_monai_on_the_whole_array(rng, use_subvoxels, at_border):
    shape = (44, 40, 30)
    spacing = (0.8, 0.7, 2.5)
    center = (36, 33, 24) if at_border else (16, 18, 12)  # radius 8 reaches the edge or not
    truth = ball(shape, center, 8)
    noise = ball(shape, center, 10) & (rng.random(shape) < 0.1)
    pred = np.roll(truth, (2, -1, 1), axis=(0, 1, 2)) ^ noise
    pred[tuple(c - 2 for c in center)] = False  # a hole
    ours = nsd(pred, truth, spacing, use_subvoxels=use_subvoxels)
    theirs = monai_nsd_uncropped(pred, truth, spacing, 2.0, use_subvoxels)
    assert 0.05 < ours < 0.95
    assert ours == pytest.approx(theirs, abs=1e-6)
    # more background around the masks (what the crop removes) changes nothing either
    padded = nsd(np.pad(pred, 6), np.pad(truth, 6), spacing, use_subvoxels=use_subvoxels)
    assert padded == pytest.approx(ours, abs=1e-6)


def test_nsd_subvoxel_and_voxel_counting_differ_on_irregular_shapes(rng):
    truth = ball((24, 24, 24), (12, 12, 12), 7)
    pred = truth ^ (rng.random(truth.shape) < 0.05)
    spacing = (0.7, 0.7, 2.0)
    assert nsd(pred, truth, spacing) != pytest.approx(
        nsd(pred, truth, spacing, use_subvoxels=False), abs=1e-4
    )


def test_nsd_empty_masks():
    empty = np.zeros((6, 6, 6), bool)
    full = cube((6, 6, 6), (1, 1, 1), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no MONAI "all 0" warnings leak out
        assert math.isnan(nsd(empty, empty, (1, 1, 1)))
        assert nsd(empty, empty, (1, 1, 1), empty_value=1.0) == 1.0
        assert nsd(full, empty, (1, 1, 1)) == 0.0
        assert nsd(empty, full, (1, 1, 1), empty_value=1.0) == 0.0


def test_nsd_refuses_bad_spacing_and_tolerance():
    mask = cube((5, 5, 5), (1, 1, 1), 2)
    with pytest.raises(ParameterError, match=r"spacing must be 3 .*\(1, 1\)"):
        nsd(mask, mask, (1, 1))
    with pytest.raises(ParameterError, match=r"spacing.*\(1, 0, 1\)"):
        nsd(mask, mask, (1, 0, 1))
    with pytest.raises(ParameterError, match=r"tolerance_mm must be .* got -1"):
        nsd(mask, mask, (1, 1, 1), tolerance_mm=-1)


@settings(max_examples=20, deadline=None)
@given(
    pred=arrays(bool, (5, 6, 4)),
    truth=arrays(bool, (5, 6, 4)),
    spacing=st.tuples(*[st.sampled_from([0.5, 1.0, 2.5])] * 3),
)
def test_scores_are_symmetric_and_bounded(pred, truth, spacing):
    for score in (dice, lambda a, b: nsd(a, b, spacing)):
        forward, backward = score(pred, truth), score(truth, pred)
        if not pred.any() and not truth.any():
            assert math.isnan(forward) and math.isnan(backward)
        else:
            assert 0.0 <= forward <= 1.0
            assert forward == pytest.approx(backward, abs=1e-6)


def test_metrics_leave_inputs_unchanged(rng):
    pred = rng.random((8, 8, 8)) < 0.3
    truth = rng.random((8, 8, 8)) < 0.3
    pred_copy, truth_copy = pred.copy(), truth.copy()
    dice(pred, truth)
    nsd(pred, truth, (1, 1, 1))
    lesion_detection(pred, truth, (1, 1, 1))
    assert np.array_equal(pred, pred_copy) and np.array_equal(truth, truth_copy)


# --- lesion sizes ---------------------------------------------------------------------------


def test_equivalent_radius_and_bins():
    assert equivalent_radius_mm(4 / 3 * math.pi * 7.0**3) == pytest.approx(7.0)
    assert [size_bin_index(r) for r in (0.0, 4.99, 5.0, 12.0, 19.99, 20.0, 1e6)] == [
        0,
        0,
        1,
        2,
        3,
        4,
        4,
    ]
    assert [size_bin_name(b) for b in SIZE_BINS_MM] == [
        "0to5mm",
        "5to10mm",
        "10to15mm",
        "15to20mm",
        "20mm_up",
    ]
    with pytest.raises(ParameterError, match="radius_mm"):
        size_bin_index(-1.0)


def test_voxelised_ball_gets_about_its_radius():
    truth = ball((25, 25, 25), (12, 12, 12), 10)
    result = lesion_detection(np.zeros_like(truth), truth, (1, 1, 1))
    (lesion,) = result.truth_lesions
    assert lesion.radius_mm == pytest.approx(10.0, abs=0.2)
    assert lesion.centroid_voxel == pytest.approx((12.0, 12.0, 12.0))
    assert lesion.volume_ml == pytest.approx(truth.sum() / 1000)


def test_lesions_of_known_size_land_in_their_bins():
    # cubes of side a mm have r = a * (3 / 4π)^(1/3) ≈ 0.62 a: sides 4, 12, 20, 28, 40 mm
    # give radii ≈ 2.5, 7.4, 12.4, 17.4, 24.8 mm, one per bin. Spacing 2 mm (8 mm³ voxels).
    sides_vox = (2, 6, 10, 14, 20)
    shape = (22, 80, 22)
    truth = np.zeros(shape, bool)
    start = 1
    for side in sides_vox:
        truth |= cube(shape, (1, start, 1), side)
        start += side + 2
    # cubes along axis 1 at y = 1, 5, 13, 25, 41
    pred = truth.copy()
    pred[:, 41:, :] = False  # miss the largest
    pred[:, :12, :] = False  # miss the two smallest
    result = lesion_detection(pred, truth, (2.0, 2.0, 2.0))
    radii = sorted(lesion.radius_mm for lesion in result.truth_lesions)
    expected = [2.0 * side * (3 / (4 * math.pi)) ** (1 / 3) for side in sides_vox]
    assert radii == pytest.approx(expected)
    assert result.total_per_bin == (1, 1, 1, 1, 1)
    assert result.detected_per_bin == (0, 0, 1, 1, 0)
    assert result.false_positive_lesions == 0
    assert result.lesions_detected == 2 and result.lesions_total == 5


def test_missed_lesion_and_false_positive():
    shape = (20, 20, 20)
    truth = cube(shape, (2, 2, 2), 4) | cube(shape, (12, 12, 12), 4)
    pred = np.zeros(shape, bool)
    pred[3, 3, 3] = True  # one voxel inside the first lesion is enough
    pred |= cube(shape, (2, 13, 2), 3)  # overlaps no truth lesion
    result = lesion_detection(pred, truth, (1, 1, 1))
    detected = {lesion.centroid_voxel: lesion.overlapped for lesion in result.truth_lesions}
    assert detected == {(3.5, 3.5, 3.5): True, (13.5, 13.5, 13.5): False}
    assert result.lesions_detected == 1 and result.lesions_total == 2
    assert result.false_positive_lesions == 1
    assert sorted(lesion.overlapped for lesion in result.predicted_lesions) == [False, True]
    assert result.scan_has_tumor and result.scan_predicted_tumor


def test_connectivity_decides_what_is_one_lesion():
    truth = np.zeros((6, 6, 6), bool)
    truth[1, 1, 1] = truth[2, 2, 2] = True  # corner neighbours
    truth[4, 1, 1] = truth[4, 2, 1] = True  # face neighbours
    empty = np.zeros_like(truth)
    counts = {
        c: lesion_detection(empty, truth, (1, 1, 1), connectivity=c).lesions_total
        for c in (6, 18, 26)
    }
    assert counts == {6: 3, 18: 3, 26: 2}
    with pytest.raises(ParameterError, match="connectivity must be one of 6, 18, 26, got 8"):
        lesion_detection(empty, truth, (1, 1, 1), connectivity=8)


def test_detection_needs_3d_masks_and_valid_spacing():
    flat = np.zeros((4, 4), bool)
    with pytest.raises(MaskError, match=r"3-D.*\(4, 4\)"):
        lesion_detection(flat, flat, (1, 1))
    volume = np.zeros((4, 4, 4), bool)
    with pytest.raises(ParameterError, match="spacing"):
        lesion_detection(volume, volume, (1, 1, -2))


# --- summary over scans ---------------------------------------------------------------------


def scan(truth_cubes, pred_cubes, shape=(16, 16, 16)) -> DetectionResult:
    truth = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    for corner, side in truth_cubes:
        truth |= cube(shape, corner, side)
    for corner, side in pred_cubes:
        pred |= cube(shape, corner, side)
    return lesion_detection(pred, truth, (1, 1, 1))


def test_summary_specificity_sensitivity_and_false_positives():
    small = ((2, 2, 2), 3)  # 27 mm³ → r ≈ 1.9 mm, bin 0
    large = ((6, 6, 6), 9)  # 729 mm³ → r ≈ 5.6 mm, bin 1
    elsewhere = ((0, 12, 0), 2)
    results = [
        scan([], []),  # tumor-free, clean
        scan([], [elsewhere, small]),  # tumor-free, two false positives
        scan([small, large], [large]),  # small missed, large found
        scan([small], []),  # tumor scan with nothing predicted
        scan([large], [elsewhere]),  # tumor scan, only a false positive
    ]
    summary = summarize_detection(results)
    assert summary.scans == 5
    assert summary.total_per_bin == (2, 2, 0, 0, 0)
    assert summary.detected_per_bin == (0, 1, 0, 0, 0)
    assert summary.sensitivity_per_bin[:2] == (0.0, 0.5)
    assert all(math.isnan(value) for value in summary.sensitivity_per_bin[2:])
    assert summary.lesion_sensitivity == pytest.approx(1 / 4)
    assert summary.false_positive_lesions == 3
    assert summary.false_positives_per_scan == pytest.approx(3 / 5)
    assert (summary.tumor_free_scans, summary.tumor_free_scans_without_prediction) == (2, 1)
    assert summary.patient_specificity == pytest.approx(0.5)
    assert (summary.tumor_scans, summary.tumor_scans_with_prediction) == (3, 2)
    assert summary.patient_sensitivity == pytest.approx(2 / 3)


def test_all_empty_scans_and_empty_summary():
    empty_scan = scan([], [])
    assert empty_scan.truth_lesions == () and empty_scan.predicted_lesions == ()
    assert not empty_scan.scan_has_tumor and not empty_scan.scan_predicted_tumor
    summary = summarize_detection([empty_scan, empty_scan])
    assert summary.patient_specificity == 1.0 and summary.false_positives_per_scan == 0.0
    assert math.isnan(summary.lesion_sensitivity) and math.isnan(summary.patient_sensitivity)
    nothing = summarize_detection([])
    assert nothing.scans == 0 and nothing.lesions_total == 0
    assert math.isnan(nothing.false_positives_per_scan)
    assert math.isnan(nothing.patient_specificity)


# --- per-case row ---------------------------------------------------------------------------


def test_evaluate_case_row():
    shape = (24, 24, 24)
    spacing = (1.0, 0.8, 2.0)
    truth = np.zeros(shape, np.int16)
    truth[ball(shape, (12, 12, 12), 9)] = 1
    truth[cube(shape, (8, 8, 8), 4)] = 2
    pred = np.roll(truth, 1, axis=1).astype(np.float32)  # like nibabel's get_fdata()
    pred[cube(shape, (15, 15, 15), 2)] = 2  # a false-positive tumor inside the liver
    row = evaluate_case(pred, truth, spacing)
    assert list(row)[:4] == ["liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"]
    assert row["liver_dice"] == pytest.approx(dice(pred == 1, truth == 1))
    assert row["tumor_dice"] == pytest.approx(dice(pred == 2, truth == 2))
    assert row["tumor_nsd"] == pytest.approx(nsd(pred == 2, truth == 2, spacing))
    with_tumor = evaluate_case(pred, truth, spacing, liver_includes_tumor=True)
    assert with_tumor["liver_dice"] == pytest.approx(dice(pred > 0, truth > 0))
    assert with_tumor["liver_dice"] != pytest.approx(row["liver_dice"])
    assert (row["tumor_lesions"], row["tumor_lesions_detected"]) == (1, 1)
    assert row["false_positive_lesions"] == 1
    # 64 voxels of 1.6 mm³ = 102.4 mm³ → r = (3·102.4 / 4π)^(1/3) ≈ 2.9 mm
    assert row["lesions_0to5mm"] == 1 and row["detected_0to5mm"] == 1
    assert sum(row[f"lesions_{size_bin_name(b)}"] for b in SIZE_BINS_MM) == 1
    assert all(isinstance(v, float | int | bool) for v in row.values())


def test_evaluate_case_tumor_free_scan():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    row = evaluate_case(labels, labels, (1, 1, 1))
    assert row["liver_dice"] == 1.0 and row["liver_nsd"] == pytest.approx(1.0)
    assert math.isnan(row["tumor_dice"]) and math.isnan(row["tumor_nsd"])
    assert row["scan_has_tumor"] is False and row["false_positive_lesions"] == 0
    perfect = evaluate_case(labels, labels, (1, 1, 1), empty_value=1.0)
    assert perfect["tumor_dice"] == 1.0 and perfect["tumor_nsd"] == 1.0
    with pytest.raises(MaskError, match=r"3-D and of one shape.*\(10, 10, 10\) and \(10, 10\)"):
        evaluate_case(labels, labels[0], (1, 1, 1))
