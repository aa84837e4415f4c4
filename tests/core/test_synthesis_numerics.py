"""The fast building blocks of the render against plain reference computations.

Each block was rewritten for speed (filters as matrix products, erosion as shifted ANDs, the
three elastic passes on the shape's own window, the output copied in a background thread);
here each is compared with the straightforward computation it replaces.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from syntumor_core.errors import VolumeError
from syntumor_core.synthesis.effects import _true_indices
from syntumor_core.synthesis.inputs import check_finite
from syntumor_core.synthesis.output import OutputCopy
from syntumor_core.synthesis.paint import blur_groups
from syntumor_core.synthesis.placement import bounding_box
from syntumor_core.synthesis.separable import (
    dilate_box,
    erode_box,
    gaussian_filter,
    gaussian_of_part,
    interpolation_matrix,
)
from syntumor_core.synthesis.shape import DEFORM_AXIS_PAIRS, displacement_field, tumor_shape


@pytest.mark.parametrize(
    ("shape", "sigmas"),
    [
        ((40, 37, 29), (1.0, 1.5, 2.0)),  # short axes: one product per axis
        ((130, 71, 100), (2.0, 2.0, 2.0)),  # long axes: banded blocks
        ((9, 150, 5), (3.5, 0.8, 4.0)),  # kernels wider than the axis (reflection folds)
        ((20, 20, 20), (0.0, 1.2, 0.6)),  # no filter along one axis
    ],
)
def test_gaussian_filter_matches_scipy(shape, sigmas):
    values = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = ndimage.gaussian_filter(values, sigmas)
    result = gaussian_filter(values, sigmas)
    assert result.dtype == np.float32 and result.shape == shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


def test_gaussian_filter_of_a_supported_mask_matches_scipy_and_is_exactly_zero_beyond_reach():
    mask = np.zeros((90, 80, 70), dtype=bool)
    mask[30:61, 20:41, 25:50] = np.random.default_rng(1).random((31, 21, 25)) > 0.3
    support = bounding_box(mask)
    sigmas = (2.0, 1.5, 1.0)
    result = gaussian_filter(mask, sigmas, support)
    expected = ndimage.gaussian_filter(mask.astype(np.float32), sigmas)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)
    # Beyond the kernel's radius (4 sigma) of the mask's box nothing is added, not even 1e-9.
    assert not result[:21].any() and not result[70:].any()
    assert result.min() >= 0.0


def test_interpolation_matrix_is_linear_and_clamps_at_the_edges():
    samples = np.array([2.0, 4.0, 8.0, 16.0, 32.0])
    positions = np.array([-3.0, 0.0, 0.5, 1.25, 3.0, 4.0, 9.0])
    matrix, used = interpolation_matrix(positions, samples.size)
    values = matrix @ samples[used]
    np.testing.assert_allclose(values, [2.0, 2.0, 3.0, 5.0, 16.0, 32.0, 32.0], rtol=1e-6)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
    # Only the samples that are read are returned.
    matrix, used = interpolation_matrix(np.array([1.2, 2.7]), 10)
    assert used == slice(1, 4) and matrix.shape == (2, 3)


@settings(max_examples=80, deadline=None)
@given(
    shape=st.lists(st.integers(1, 16), min_size=2, max_size=3),
    half_widths=st.lists(st.integers(0, 3), min_size=3, max_size=3),
    density=st.floats(0.05, 0.95),
    seed=st.integers(0, 1000),
    transposed=st.booleans(),
)
def test_erosion_and_dilation_equal_minimum_and_maximum_filters(
    shape, half_widths, density, seed, transposed
):
    mask = np.random.default_rng(seed).random(shape) < density
    if transposed:
        mask = mask.T
    size = tuple(2 * h + 1 for h in half_widths[: mask.ndim])
    expected = ndimage.minimum_filter(mask, size=size, mode="constant", cval=False)
    assert np.array_equal(erode_box(mask, size), expected)
    expected = ndimage.maximum_filter(mask, size=size, mode="constant", cval=False)
    assert np.array_equal(dilate_box(mask, size), expected)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12)),
    fraction=st.floats(0.0, 0.2),
    seed=st.integers(0, 1000),
)
def test_bounding_box_is_the_extent_of_the_true_voxels(shape, fraction, seed):
    mask = np.random.default_rng(seed).random(shape) < fraction
    box = bounding_box(mask)
    if not mask.any():
        assert box is None
        return
    index = np.nonzero(mask)
    assert box == tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)


def _reference_shape(semi_axes_mm, displacements_mm, spacing) -> np.ndarray:
    """The spec's shape over the whole grid: ellipsoid, then three nearest-neighbour passes."""
    grid = tuple(max(1, round(4.0 * a / s)) for a, s in zip(semi_axes_mm, spacing, strict=True))
    coords = [
        ((np.arange(n) - n // 2) * s / a) ** 2
        for n, a, s in zip(grid, semi_axes_mm, spacing, strict=True)
    ]
    shape = (
        coords[0].astype(np.float32)[:, None, None]
        + coords[1].astype(np.float32)[None, :, None]
        + coords[2].astype(np.float32)[None, None, :]
    ) <= 1.0
    for control, (p, q) in zip(displacements_mm, DEFORM_AXIS_PAIRS, strict=True):
        field = displacement_field(control, (grid[p], grid[q]), (spacing[p], spacing[q]))
        index = np.indices((grid[p], grid[q]))
        source_p = np.rint(index[0] + field[0]).astype(int)
        source_q = np.rint(index[1] + field[1]).astype(int)
        inside = (source_p >= 0) & (source_p < grid[p]) & (source_q >= 0) & (source_q < grid[q])
        moved = np.moveaxis(shape, (p, q), (0, 1))
        result = np.zeros_like(moved)
        result[inside] = moved[source_p[inside], source_q[inside]]
        shape = np.moveaxis(result, (0, 1), (p, q))
    return shape


@pytest.mark.parametrize(
    ("semi_axes", "sigma", "spacing"),
    [
        ((4, 3, 5), 1.0, (1.0, 1.0, 1.0)),
        ((9, 7, 10), 2.0, (0.8, 0.8, 1.5)),
        ((16, 20, 13), 6.0, (1.0, 1.0, 1.0)),
        ((30, 24, 36), 10.0, (1.5, 1.5, 2.5)),
    ],
)
def test_tumor_shape_equals_the_full_grid_computation(semi_axes, sigma, spacing):
    generator = np.random.default_rng(3)
    for _ in range(3):
        displacements = generator.normal(0.0, sigma, size=(3, 2, 3, 3))
        expected = _reference_shape(semi_axes, displacements, spacing)
        shape = tumor_shape(semi_axes, displacements, spacing)
        centre = np.array([n // 2 for n in expected.shape])
        placed = np.zeros_like(expected)
        start = centre + np.asarray(shape.offset)
        placed[tuple(slice(s, s + n) for s, n in zip(start, shape.mask.shape, strict=True))] = (
            shape.mask
        )
        assert np.array_equal(placed, expected)
        assert shape.mask.any() and all(
            shape.mask.any(axis=tuple(a for a in range(3) if a != axis))[[0, -1]].all()
            for axis in range(3)
        ), "the mask is cropped to its voxels"


@pytest.mark.parametrize("layout", ["C", "F", "strided", "int16"])
def test_output_copy_equals_a_plain_copy(layout):
    generator = np.random.default_rng(5)
    image = (generator.normal(60.0, 40.0, (37, 29, 23))).astype(np.float32)
    mask = generator.random(image.shape) > 0.6
    if layout == "F":
        image, mask = np.asfortranarray(image), np.asfortranarray(mask)
    elif layout == "strided":
        image, mask = image[::2, :, 1:], mask[::2, :, 1:]
    elif layout == "int16":
        image = np.round(image).astype(np.int16)
    copied_image, label = OutputCopy(image, mask).result(bounding_box(mask))
    assert copied_image.dtype == np.float32 and label.dtype == np.uint8
    assert np.array_equal(copied_image, np.array(image, dtype=np.float32))
    assert np.array_equal(label, mask.astype(np.uint8))
    assert not np.shares_memory(copied_image, image) and not np.shares_memory(label, mask)
    # Without a box the whole mask is copied.
    assert np.array_equal(OutputCopy(image, mask).result()[1], mask.astype(np.uint8))


def test_a_cancelled_output_copy_stops_and_gives_no_result():
    image = np.zeros((64, 256, 256), dtype=np.float32)
    copy = OutputCopy(image, image > 0)
    copy.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        copy.result()
    assert not copy._thread.is_alive()


def test_finite_check_refuses_nan_and_infinity_but_not_large_values():
    image = np.full((10, 10, 10), 3.0e37, dtype=np.float32)  # the sum overflows float32
    box = (slice(0, 10),) * 3
    check_finite(image, box)
    for bad in (np.nan, np.inf, -np.inf):
        broken = image.copy()
        broken[4, 5, 6] = bad
        with pytest.raises(VolumeError, match="1 NaN or infinite"):
            check_finite(broken, box)
    check_finite(broken, (slice(0, 4),) * 3)  # outside the box it is not read


def test_true_indices_equal_nonzero():
    for density in (0.0, 0.3, 1.0):
        mask = np.random.default_rng(9).random((6, 9, 7)) < density
        *index, flat = _true_indices(mask)
        expected = np.nonzero(mask)
        assert all(np.array_equal(a, b) for a, b in zip(index, expected, strict=True))
        assert np.array_equal(flat, np.flatnonzero(mask))


def test_blur_of_grouped_parts_adds_up_to_the_blur_of_the_whole_tumor():
    """Overlapping parts (ellipsoid boxes) far apart and close together; some voxels of the
    parts are not tumor (carved away, e.g. outside the organ)."""
    generator = np.random.default_rng(10)
    tumor = np.zeros((90, 70, 60), dtype=bool)
    parts = []
    for start, size in [
        ((5, 5, 5), (30, 25, 20)),
        ((20, 15, 10), (25, 30, 25)),
        ((70, 50, 40), (8, 9, 7)),
    ]:
        box = tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
        mask = generator.random(size) > 0.3
        parts.append((box, mask))
        tumor[box] |= mask
    tumor &= generator.random(tumor.shape) > 0.05
    sigmas, margin = (1.5, 1.2, 2.0), [6, 5, 7]
    groups = blur_groups(tumor, parts, margin)
    assert len(groups) == 2  # the far tiny part is blurred on its own box
    total = np.zeros(tumor.shape, dtype=np.float32)
    covered = np.zeros(tumor.shape, dtype=int)
    for blur_box, support, mask in groups:
        shape = [s.stop - s.start for s in blur_box]
        total[blur_box] += gaussian_of_part(mask, [s.start for s in support], shape, sigmas, 3.0)
        placed = np.zeros(shape, dtype=int)
        placed[support] = mask
        covered[blur_box] += placed
    assert np.array_equal(covered, tumor.astype(int)), "every tumor voxel in exactly one group"
    expected = ndimage.gaussian_filter(tumor.astype(np.float32), sigmas, truncate=3.0)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("profile", ["paper", "realistic"])
def test_column_ordered_inputs_give_the_same_result(small_liver, profile):
    """nibabel hands out column-ordered (Fortran) arrays, and a mask made from one with
    ``== 1`` keeps that order: the result is the same as with row-ordered inputs."""
    from syntumor_core.synthesis import synthesize

    image, mask = small_liver.image, small_liver.mask
    protect = np.zeros_like(mask)
    protect[30:40, 30:40, 20:30] = True
    kwargs = dict(spacing=small_liver.spacing, seed=3, tumor_type="mix", profile=profile)
    rows = synthesize(image, mask, protect=protect, **kwargs)
    columns = synthesize(
        np.asfortranarray(image),
        np.asfortranarray(mask),
        protect=np.asfortranarray(protect),
        **kwargs,
    )
    assert np.array_equal(rows.image, columns.image)
    assert np.array_equal(rows.label, columns.label)
    assert rows.manifest["input"] == columns.manifest["input"]
