"""Design and blinding of a reader study: tumor sizes, matching, orders, common grid, encoding."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from syntumor_core.errors import ParameterError, VolumeError
from syntumor_core.reader_study import Answer, arm_comparison, arm_rates
from syntumor_core.reader_study.blinding import (
    CommonGrid,
    common_grid,
    decode_case,
    encode_case,
    resample_to_grid,
    served_size,
)
from syntumor_core.reader_study.design import (
    focus_point_mm,
    match_tumor_type,
    matched_profile,
    plan_matched_cases,
    reading_order,
    tumor_diameters_mm,
)
from syntumor_core.synthesis import get_organ_profile, synthesize


@pytest.fixture(scope="module")
def liver():
    return get_organ_profile("liver")


def _ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_diameters_are_those_of_equal_volume_spheres_largest_first():
    labels = np.zeros((60, 60, 60), np.uint8)
    labels[_ball(labels.shape, (15, 15, 15), 8)] = 2
    labels[_ball(labels.shape, (45, 45, 45), 4)] = 2
    labels[30, 5, 5] = 2  # one voxel: label noise, below min_voxels
    labels[_ball(labels.shape, (45, 15, 40), 6)] = 1  # organ, not tumor
    diameters = tumor_diameters_mm(labels, (0.5, 0.5, 2.0))
    voxels = [
        int(_ball(labels.shape, (15, 15, 15), 8).sum()),
        int(_ball(labels.shape, (45, 45, 45), 4).sum()),
    ]
    expected = [(6 * n * 0.5 / math.pi) ** (1 / 3) for n in voxels]
    assert diameters == pytest.approx(expected)
    assert tumor_diameters_mm(np.zeros((5, 5, 5), np.uint8), (1, 1, 1)) == []
    with pytest.raises(ParameterError, match="3-D label map and three spacings"):
        tumor_diameters_mm(labels[0], (1, 1))


def test_diagonal_neighbours_are_one_tumor():
    labels = np.zeros((10, 10, 10), np.uint8)
    for i in range(5):
        labels[2 + i, 2 + i, 2 + i] = 2
    assert len(tumor_diameters_mm(labels, (1, 1, 1), min_voxels=1)) == 1


@pytest.mark.parametrize(
    ("radius", "expected", "covered"),
    [(3.0, "tiny", True), (5.0, "tiny", True), (5.4, "tiny", False), (5.6, "small", False),
     (9.2, "small", True), (11.6, "medium", False), (17.6, "medium", True), (22.5, "large", False),
     (60.0, "large", False), (1.0, "tiny", False)],
)  # fmt: skip
def test_the_type_whose_range_covers_the_radius(liver, radius, expected, covered):
    match = match_tumor_type(radius, liver)
    assert (match.tumor_type, match.covered) == (expected, covered)
    low, high = match.semi_axis_range_mm
    assert (low <= radius <= high) == covered


def test_matching_refuses_bad_radii(liver):
    for radius in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="positive number"):
            match_tumor_type(radius, liver)


def test_matched_profile_draws_exactly_the_count(liver, small_liver):
    profile = matched_profile(liver, "small", 2)
    assert profile.types["small"].groups[0].count == (2, 2)
    assert liver.types["small"].groups[0].count == (3, 10)  # the input is unchanged
    made = synthesize(small_liver.image, small_liver.mask, spacing=small_liver.spacing, seed=3,
                      tumor_type="small", organ_profile=profile)  # fmt: skip
    assert len(made.params.ellipsoids) == 2
    with pytest.raises(ParameterError, match="mixes 4 size classes"):
        matched_profile(liver, "mix", 1)
    with pytest.raises(ParameterError, match="integer >= 1"):
        matched_profile(liver, "small", 0)


def test_plans_deal_every_real_case_before_repeating(liver):
    real = [[30.0, 12.0], [], [9.0], [45.0]]
    plans = plan_matched_cases(real, 7, liver, rng=np.random.default_rng(1))
    assert sorted(p.mirrors for p in plans[:3]) == [0, 2, 3]  # the empty case is never mirrored
    assert sorted(p.mirrors for p in plans[3:6]) == [0, 2, 3]
    by_case = {p.mirrors: p for p in plans}
    assert (by_case[0].tumor_type, by_case[0].count, by_case[0].diameter_mm) == ("medium", 1, 30.0)
    assert (by_case[2].tumor_type, by_case[3].tumor_type) == ("tiny", "large")
    again = plan_matched_cases(real, 7, liver, rng=np.random.default_rng(1))
    assert again == plans
    with pytest.raises(ParameterError, match="no real case has a tumor"):
        plan_matched_cases([[], []], 2, liver, rng=np.random.default_rng(0))


def test_a_reading_order_is_a_seeded_permutation_with_late_repeats():
    order = reading_order(12, 3, rng=np.random.default_rng(5))
    assert len(order) == 15
    assert sorted(case for case, reading in order if reading == 0) == list(range(12))
    repeats = [case for case, reading in order if reading == 1]
    assert len(set(repeats)) == 3
    for case in repeats:
        assert order.index((case, 1)) - order.index((case, 0)) > 12 // 3
    assert reading_order(12, 3, rng=np.random.default_rng(5)) == order
    assert reading_order(12, 3, rng=np.random.default_rng(6)) != order
    with pytest.raises(ParameterError, match="repeats <= n_cases"):
        reading_order(3, 4, rng=np.random.default_rng(0))


def test_focus_is_the_largest_tumor_else_the_labels_else_the_centre():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:4, 2:4, 2:4] = 2
    labels[10:16, 10:16, 10:16] = 2
    assert focus_point_mm(labels, affine) == pytest.approx(
        [10 + 2 * 12.5, 20 + 2 * 12.5, 30 + 2 * 12.5]
    )
    organ = np.zeros_like(labels)
    organ[0:4, 0:2, 0:2] = 1
    assert focus_point_mm(organ, affine) == pytest.approx([10 + 3.0, 20 + 1.0, 30 + 1.0])
    assert focus_point_mm(None, affine, (5, 5, 5)) == pytest.approx([14, 24, 34])


def test_resampling_on_the_same_grid_is_an_exact_crop():
    rng = np.random.default_rng(0)
    array = rng.normal(0, 100, (30, 28, 26)).astype(np.float32)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-7, 3, 11]
    grid = CommonGrid((10, 9, 8), (1.5, 1.5, 1.5))
    centre = affine[:3, :3] @ np.array([15, 14, 13]) + affine[:3, 3]
    out = resample_to_grid(array, affine, grid, centre)
    np.testing.assert_array_equal(out, array[10:20, 10:19, 9:17])
    corner = resample_to_grid(array, affine, grid, [-1000, -1000, -1000])  # kept inside
    np.testing.assert_array_equal(corner, array[:10, :9, :8])


def test_resampling_follows_the_world_not_the_array_axes():
    array = np.zeros((20, 20, 20), np.float32)
    array[15, 5, 10] = 100.0
    flipped = np.diag([-2.0, 2.0, 2.0, 1.0])  # axis 0 runs right to left
    flipped[:3, 3] = [38, 0, 0]
    point = flipped[:3, :3] @ np.array([15, 5, 10]) + flipped[:3, 3]
    grid = CommonGrid((5, 5, 5), (2.0, 2.0, 2.0))
    out = resample_to_grid(array, flipped, grid, point, order=0)
    assert out[2, 2, 2] == 100.0 and out.sum() == 100.0


def test_common_grid_uses_the_coarsest_spacing_and_a_box_all_cases_fill():
    a = ((100, 80, 40), np.diag([1.0, 1.0, 2.5, 1.0]))
    b = ((60, 60, 30), np.diag([2.0, 2.0, 3.0, 1.0]))
    grid = common_grid([a, b])
    assert grid.spacing_mm == (2.0, 2.0, 3.0)
    assert grid.shape == (50, 40, 30)  # box 100 x 80 x 90 mm
    assert common_grid([a, b], box_mm=60).shape == (30, 30, 20)
    assert common_grid([a, b], spacing_mm=(1, 1, 1), box_mm=50).shape == (50, 50, 50)


def test_encoded_headers_do_not_depend_on_the_case():
    grid = CommonGrid((12, 10, 8), (2.0, 2.0, 3.0))
    rng = np.random.default_rng(1)
    first = encode_case(rng.normal(50, 300, grid.shape), grid)
    second = encode_case(np.full(grid.shape, -1000.0), grid)
    assert first[:352] == second[:352] and len(first) == len(second) == served_size(grid)
    assert first[:4] == (348).to_bytes(4, "little")  # an uncompressed NIfTI-1, not gzip
    voxels, affine, header = decode_case(first)
    assert voxels.dtype == np.int16 and voxels.shape == grid.shape
    np.testing.assert_array_equal(affine, grid.affine)
    assert header["descrip"].tobytes().strip(b"\0") == b""
    with pytest.raises(VolumeError, match="the grid"):
        encode_case(np.zeros((3, 3, 3)), grid)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**16), st.floats(1, 2000))
def test_the_size_and_header_follow_the_grid_alone(side, seed, spread):
    grid = CommonGrid((side, side + 1, side + 2), (1.0, 1.5, 2.0))
    values = np.random.default_rng(seed).normal(0, spread, grid.shape)
    data = encode_case(values, grid)
    flat = encode_case(np.zeros(grid.shape), grid)
    assert len(data) == len(flat) == served_size(grid) == 352 + 2 * side * (side + 1) * (side + 2)
    assert data[:352] == flat[:352]
    voxels, _, _ = decode_case(data)
    np.testing.assert_array_equal(voxels, np.clip(np.rint(values), -1024, 3071))


def test_a_gzip_copy_of_an_earlier_study_still_decodes():
    grid = CommonGrid((4, 4, 4), (1.0, 1.0, 1.0))
    data = encode_case(np.arange(64.0).reshape(4, 4, 4), grid)
    voxels, _, _ = decode_case(gzip.compress(data))
    np.testing.assert_array_equal(voxels, np.arange(64).reshape(4, 4, 4))


def test_arm_rates_and_their_comparison_match_fisher():
    word = {"R": "real", "S": "synthetic", "U": "unsure"}
    answers = [Answer("r1", f"{arm}{i}", "synthetic", word[letter])
               for arm, letters in (("a", "RRRSSU"), ("b", "RSSSSS"))
               for i, letter in enumerate(letters)]  # fmt: skip
    arms = {f"a{i}": "paper" for i in range(6)} | {f"b{i}": "realistic" for i in range(6)}
    rates = arm_rates(answers, arms)
    assert rates["paper"].called_real.value == pytest.approx(3 / 6)
    assert rates["paper"].called_real_definite.value == pytest.approx(3 / 5)
    assert rates["realistic"].unsure.value == 0
    comparison = arm_comparison(answers, arms)
    odds, p = fisher_exact([[3, 2], [1, 5]])
    assert comparison["table"] == [[3, 2], [1, 5]]
    assert (comparison["odds_ratio"], comparison["p_value"]) == pytest.approx((odds, p))
    assert arm_comparison(answers, {case: "one" for case in arms}) is None
    with pytest.raises(ParameterError, match="has no arm"):
        arm_rates(answers, {"a0": "paper"})


def test_a_finer_case_is_low_passed_to_the_grid_noise_level():
    rng = np.random.default_rng(3)
    fine = rng.normal(0, 100, (60, 60, 60)).astype(np.float32)  # white noise at 1 mm
    grid = CommonGrid((20, 20, 20), (2.0, 2.0, 2.0))
    out = resample_to_grid(fine, np.eye(4), grid, [30, 30, 30])
    sampled = fine[10:50:2, 10:50:2, 10:50:2]  # what plain sampling would give
    assert out.std() < 0.6 * sampled.std()  # aliased noise removed
    same = resample_to_grid(
        fine, np.eye(4), CommonGrid((20, 20, 20), (1.0, 1.0, 1.0)), [30, 30, 30]
    )
    np.testing.assert_array_equal(same, fine[20:40, 20:40, 20:40])  # same spacing: untouched
