"""Tumors where the caller points: ``synthesize(..., centers=[(i, j, k), ...])``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from syntumor_core.errors import MaskError, ParameterError
from syntumor_core.synthesis import replay, synthesize


def _deep_points(mask: np.ndarray, spacing, depth_mm: float, count: int, seed: int) -> list:
    """``count`` organ voxels at least ``depth_mm`` from the organ's edge, far apart."""
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    candidates = np.argwhere(depth >= depth_mm)
    rng = np.random.default_rng(seed)
    points: list[tuple[int, int, int]] = []
    for index in rng.permutation(len(candidates)):
        point = tuple(int(v) for v in candidates[index])
        gaps = [np.linalg.norm((np.subtract(point, p)) * spacing) for p in points]
        if all(gap > 2.5 * depth_mm for gap in gaps):
            points.append(point)
        if len(points) == count:
            return points
    raise AssertionError("not enough deep points")


def _tumor_centres(label: np.ndarray) -> list[np.ndarray]:
    components, count = ndimage.label(label == 2, structure=np.ones((3, 3, 3)))
    return [
        np.array(c) for c in ndimage.center_of_mass(label == 2, components, range(1, count + 1))
    ]


@pytest.mark.parametrize("profile", ["paper", "realistic"])
@pytest.mark.parametrize("tumor_type", ["small", "medium"])
def test_each_requested_point_gets_one_tumor_centred_there(small_liver, profile, tumor_type):
    spacing = small_liver.spacing
    depth = {"small": 8.0, "medium": 16.0}[tumor_type]  # 0.8 of the largest semi-axis
    points = _deep_points(small_liver.mask, spacing, depth, 2, seed=3)
    made = synthesize(small_liver.image, small_liver.mask, spacing=spacing, seed=5, centers=points,
                      tumor_type=tumor_type, profile=profile)  # fmt: skip
    centres = _tumor_centres(made.label)
    assert len(centres) == len(points)  # one tumor per point, none elsewhere
    diagonal = float(np.linalg.norm(spacing))
    for point in points:
        distances = [np.linalg.norm((c - point) * spacing) for c in centres]
        assert min(distances) <= max(diagonal, 5.0), (point, distances)
    recorded = [np.array(e["centre"]) for e in made.manifest["params"]["ellipsoids"]]
    assert len(recorded) == len(points)  # the grid points (shifted so the mass lands there)
    again = replay(json.loads(json.dumps(made.manifest)), small_liver.image, small_liver.mask)
    np.testing.assert_array_equal(again.image, made.image)
    np.testing.assert_array_equal(again.label, made.label)


def test_radius_and_drop_are_the_callers(small_liver):
    spacing = small_liver.spacing
    point = _deep_points(small_liver.mask, spacing, 15.0, 1, seed=1)
    made = synthesize(small_liver.image, small_liver.mask, spacing=spacing, seed=2,
                      centers=point, radius_mm=6, drop_hu=70, tumor_type="small")  # fmt: skip
    ellipsoid = made.manifest["params"]["ellipsoids"][0]
    assert tuple(ellipsoid["semi_axes_mm"]) == (6, 6, 6)
    assert made.manifest["params"]["blend"]["difference_hu"] == 70.0
    smaller = synthesize(small_liver.image, small_liver.mask, spacing=spacing, seed=2,
                         centers=point, radius_mm=3, tumor_type="small")  # fmt: skip
    assert np.count_nonzero(smaller.label == 2) < np.count_nonzero(made.label == 2)


def test_points_outside_or_near_the_edge_are_refused_with_a_message(small_liver):
    spacing, mask = small_liver.spacing, small_liver.mask
    outside = tuple(int(v) for v in np.argwhere(~mask)[0])
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    edge = tuple(int(v) for v in np.argwhere(mask & (depth <= 1.6))[0])
    cases = [
        ([outside], "is not inside the liver mask"),
        ([edge], "too close to the liver's edge"),
        ([(500, 1, 1)], "lies outside the image of shape (96, 96, 64)"),
        ([], "give 1 to 50 tumor centres, got 0"),
    ]
    for centers, message in cases:
        with pytest.raises(MaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
            synthesize(small_liver.image, mask, spacing=spacing, seed=1, centers=centers,
                       tumor_type="medium")  # fmt: skip
    for kwargs, message in [({"radius_mm": 0.5}, "`radius_mm` must be in"),
                            ({"drop_hu": float("nan")}, "`drop_hu` must be a number"),
                            ({"radius_mm": True}, "`radius_mm` must be a number")]:  # fmt: skip
        with pytest.raises(ParameterError, match=message):
            synthesize(small_liver.image, mask, spacing=spacing, seed=1, **kwargs)


def test_without_centers_the_published_draws_are_unchanged(small_liver):
    """The refactoring for centres kept ``paper``'s draw order: same seed, same manifest."""
    made = synthesize(small_liver.image, small_liver.mask, spacing=small_liver.spacing, seed=9)
    again = synthesize(small_liver.image, small_liver.mask, spacing=small_liver.spacing, seed=9,
                       centers=None, radius_mm=None, drop_hu=None)  # fmt: skip
    assert made.manifest["params"] == again.manifest["params"]


def test_tuned_profile_sets_texture_rim_and_mass_effect_and_replays(small_liver):
    from syntumor_core.synthesis import get_organ_profile, tuned_profile

    spacing = small_liver.spacing
    point = _deep_points(small_liver.mask, spacing, 16.0, 1, seed=4)
    results = {}
    for push in (0.0, 0.6):
        profile = tuned_profile(get_organ_profile("liver"), texture_mm=5, rim=0.5, mass_effect=push)
        made = synthesize(small_liver.image, small_liver.mask, spacing=spacing, seed=4,
                          centers=point, radius_mm=12, profile="realistic",
                          organ_profile=profile)  # fmt: skip
        assert made.manifest["params"]["texture"]["sigma_a_mm"] == 5.0
        assert made.manifest["params"]["blend"]["rim_fraction"] == 0.5
        again = replay(json.loads(json.dumps(made.manifest)), small_liver.image, small_liver.mask)
        np.testing.assert_array_equal(again.image, made.image)
        results[push] = made
    organ = (results[0.0].label == 1) & (results[0.6].label == 1)
    moved = np.abs(results[0.6].image - results[0.0].image)[organ]
    assert moved.max() > 5  # the push moved parenchyma around the tumor
    with pytest.raises(ParameterError, match="mass_effect"):
        tuned_profile(get_organ_profile("liver"), mass_effect=2.0)
