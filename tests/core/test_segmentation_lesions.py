"""The lesion table: volumes, axial diameters (against brute force), centroids, mean HU."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from syntumor_core.errors import MaskError
from syntumor_core.segmentation import lesion_table


def test_lesion_table_measures_boxes():
    labels = np.zeros((40, 40, 20), dtype=np.uint8)
    labels[5:15, 5:11, 2:6] = 2  # 10 x 6 x 4 voxels
    labels[30:33, 30:32, 10:11] = 2  # 3 x 2 x 1
    image = np.full(labels.shape, 40.0, dtype=np.float32)
    image[5:15, 5:11, 2:6] = 60.0
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 5.0)
    rows = lesion_table(labels, image, affine)
    assert [row.index for row in rows] == [1, 2] and [row.voxels for row in rows] == [240, 6]
    big = rows[0]
    assert big.volume_ml == pytest.approx(240 * 0.8 * 0.8 * 2.5 / 1000)
    assert big.longest_axial_diameter_mm == pytest.approx(math.hypot(10 * 0.8, 6 * 0.8))
    assert big.centroid_voxel == pytest.approx((9.5, 7.5, 3.5))
    assert big.centroid_mm == pytest.approx((-10 + 9.5 * 0.8, 20 + 7.5 * 0.8, 5 + 3.5 * 2.5))
    assert big.mean_hu == pytest.approx(60.0) and rows[1].mean_hu == pytest.approx(40.0)


def test_lesion_table_uses_the_axial_plane_of_a_permuted_grid():
    labels = np.zeros((12, 30, 30), dtype=np.uint8)
    labels[2:10, 5:25, 10:13] = 2  # 8 slices along axis 0, which runs inferior-superior
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 3.0, 0.7, 0.7, 1.0
    (row,) = lesion_table(labels, np.zeros(labels.shape), affine)
    assert row.longest_axial_diameter_mm == pytest.approx(math.hypot(20 * 0.7, 3 * 0.7))


def _brute_force_diameter(component: np.ndarray, axial_axis: int, matrix: np.ndarray) -> float:
    in_plane = [axis for axis in range(3) if axis != axial_axis]
    longest = 0.0
    for position in range(component.shape[axial_axis]):
        pixels = np.argwhere(np.take(component, position, axis=axial_axis))
        corners = [p + (di, dj) for p in pixels for di in (-0.5, 0.5) for dj in (-0.5, 0.5)]
        points = np.array(corners).reshape(-1, 2) @ matrix[:3, in_plane].T
        if len(points):
            longest = max(longest, ndimage.maximum(
                np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))))  # fmt: skip
    return longest


def test_lesion_table_diameters_match_brute_force_on_random_blobs():
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.standard_normal((30, 26, 12)), 1.2)
    labels = np.where(field > 0.12, 2, 0).astype(np.uint8)
    affine = np.array([[0.0, 0.9, 0.1, 5], [0.8, 0.0, 0.0, -3], [0.0, 0.05, 2.0, 1], [0, 0, 0, 1]])
    rows = lesion_table(labels, field, affine)
    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
    assert len(rows) == count > 10
    assert any(row.voxels > 40 for row in rows)  # some slices take the convex-hull path
    by_centroid = {tuple(np.round(row.centroid_voxel, 6)): row for row in rows}
    for label in range(1, count + 1):
        component = components == label
        centroid = tuple(np.round(ndimage.center_of_mass(component), 6))
        row = by_centroid[centroid]
        assert row.voxels == component.sum()
        assert row.longest_axial_diameter_mm == pytest.approx(
            _brute_force_diameter(component, 2, affine)
        )
        assert row.mean_hu == pytest.approx(field[component].mean())


def test_lesion_table_of_a_scan_without_tumor_is_empty():
    labels = np.ones((8, 8, 8), dtype=np.uint8)
    assert lesion_table(labels, np.zeros((8, 8, 8)), np.eye(4)) == ()
    with pytest.raises(MaskError, match="does not match"):
        lesion_table(labels, np.zeros((8, 8, 7)), np.eye(4))
