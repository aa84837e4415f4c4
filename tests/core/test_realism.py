"""Lesion statistics: the definitions pinned on constructed lesions (issue 16)."""

import math

import numpy as np
import pytest
from scipy import ndimage

from syntumor_core.errors import ParameterError, VolumeError
from syntumor_core.realism import measure_lesions

ORGAN_HU, LESION_HU, OUTSIDE_HU = 110.0, 62.0, -900.0


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def _sphere_case(shape=(40, 40, 40), centre=(20, 20, 20), radius=8):
    label = np.ones(shape, np.uint8)
    image = np.full(shape, ORGAN_HU, np.float32)
    lesion = _ball(shape, centre, radius)
    label[lesion] = 2
    image[lesion] = LESION_HU
    return image, label, lesion


def test_sphere_in_a_block_contrast_is_exact_and_sphericity_near_one():
    image, label, lesion = _sphere_case()
    (stats,) = measure_lesions(image, label, spacing=1.5)
    assert stats.voxels == int(lesion.sum())
    assert stats.volume_ml == pytest.approx(lesion.sum() * 1.5**3 / 1000)
    assert stats.mean_hu == pytest.approx(LESION_HU)
    assert stats.contrast_hu == pytest.approx(ORGAN_HU - LESION_HU)
    assert 0.9 < stats.sphericity <= 1.0
    assert stats.roughness < 0.05
    assert stats.centroid == pytest.approx((20.0, 20.0, 20.0))


def test_ring_is_three_face_steps_of_organ_and_nothing_else():
    image, label, lesion = _sphere_case()
    # the half-space x >= 26 is outside the organ: bright, and not part of any ring
    label[:, :, 26:] = 0
    image[:, :, 26:] = OUTSIDE_HU
    label[lesion] = 2
    image[lesion] = LESION_HU
    (stats,) = measure_lesions(image, label, spacing=1.0)
    taxicab = ndimage.distance_transform_cdt(~lesion, metric="taxicab")
    expected = (taxicab >= 1) & (taxicab <= 3) & (label == 1)
    assert stats.ring_voxels == int(expected.sum())
    assert stats.contrast_hu == pytest.approx(ORGAN_HU - LESION_HU)


def test_ring_mean_is_the_mean_of_its_voxels():
    image, label, lesion = _sphere_case(radius=5)
    rng = np.random.default_rng(0)
    image = image + rng.normal(0, 20, image.shape).astype(np.float32)
    (stats,) = measure_lesions(image, label, spacing=1.0)
    taxicab = ndimage.distance_transform_cdt(~lesion, metric="taxicab")
    ring = (taxicab >= 1) & (taxicab <= 3)
    assert stats.contrast_hu == pytest.approx(
        image[ring].mean(dtype=np.float64) - image[lesion].mean(dtype=np.float64), abs=1e-6
    )


def test_lesions_are_26_connected_and_sorted_by_size():
    label = np.ones((20, 20, 20), np.uint8)
    image = np.full(label.shape, ORGAN_HU, np.float32)
    label[2, 2, 2] = label[3, 3, 3] = 2  # corner-touching: one lesion
    label[10:14, 10:14, 10:14] = 2
    stats = measure_lesions(image, label, spacing=1.0)
    assert [s.voxels for s in stats] == [64, 2]
    assert math.isnan(stats[1].roughness)
    assert [s.voxels for s in measure_lesions(image, label, spacing=1.0, min_voxels=3)] == [64]


def test_shape_statistics_tell_round_from_lobed():
    shape = (40, 40, 40)
    lobed = _ball(shape, (20, 14, 20), 6) | _ball(shape, (20, 26, 20), 6)
    label = np.ones(shape, np.uint8)
    label[lobed] = 2
    (stats,) = measure_lesions(np.zeros(shape, np.float32), label, spacing=1.0)
    assert stats.sphericity < 0.8 and stats.roughness > 0.15


def test_no_ring_gives_nan_contrast():
    label = np.zeros((10, 10, 10), np.uint8)
    label[3:6, 3:6, 3:6] = 2
    (stats,) = measure_lesions(np.zeros(label.shape, np.float32), label, spacing=1.0)
    assert stats.ring_voxels == 0 and math.isnan(stats.contrast_hu)


def test_bad_arguments_name_the_problem():
    image, label, _ = _sphere_case(shape=(12, 12, 12), centre=(6, 6, 6), radius=3)
    with pytest.raises(VolumeError, match="one shape"):
        measure_lesions(image[1:], label, spacing=1.0)
    with pytest.raises(ParameterError, match="spacing"):
        measure_lesions(image, label, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ParameterError, match="min_voxels"):
        measure_lesions(image, label, spacing=1.0, min_voxels=-1)


def test_lits117_reference_numbers():
    """Issue 16's reference: the 15 largest lesions of LiTS-117 (≥ 290 voxels)."""
    from syntumor_core.errors import SampleNotInstalledError
    from syntumor_core.samples import LITS117_SPACING_MM, load_lits117

    try:
        sample = load_lits117()
    except SampleNotInstalledError as error:
        pytest.skip(str(error))
    stats = measure_lesions(
        sample.image.array, sample.labels.array, spacing=LITS117_SPACING_MM, min_voxels=290
    )
    contrast = np.array([s.contrast_hu for s in stats])
    assert len(stats) == 15
    assert np.median(contrast) == pytest.approx(42.9, abs=0.05)
    assert np.percentile(contrast, [25, 75]) == pytest.approx([38.3, 44.8], abs=0.05)
    assert np.median([s.mean_hu for s in stats]) == pytest.approx(69.7, abs=0.05)
