"""Tumor shapes: rasterised ellipsoids under a random elastic deformation.

The released method draws each ellipsoid on a grid four semi-axes wide, deforms it three times
(over the axis pairs (0, 1), (1, 2) and (0, 2)) with displacements drawn on a 3×3 control grid
and interpolated by cubic B-splines, resamples with nearest-neighbour interpolation, and pastes
the result around the tumor centre. Here all of that happens in millimetres for any spacing, and
only on the part of the grid that can hold the shape (the rest is provably empty), which keeps
large tumors cheap.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFORM_AXIS_PAIRS = ((0, 1), (1, 2), (0, 2))
CONTROL_POINTS = 3


@dataclass(frozen=True, eq=False)
class Shape:
    """A boolean shape and the index of its first voxel in some larger array."""

    mask: np.ndarray
    offset: tuple[int, int, int]

    @property
    def stop(self) -> tuple[int, int, int]:
        return tuple(o + n for o, n in zip(self.offset, self.mask.shape, strict=True))  # type: ignore[return-value]


def grid_shape(semi_axes_mm, spacing) -> tuple[int, int, int]:
    """The ellipsoid's grid: four semi-axes wide along each axis, in voxels."""
    return tuple(
        max(1, int(round(4.0 * a / s))) for a, s in zip(semi_axes_mm, spacing, strict=True)
    )  # type: ignore[return-value]


def rasterize_ellipsoid(semi_axes_mm, spacing) -> Shape:
    """The solid ellipsoid, centred at voxel ``n // 2`` of its grid, cropped to its extent."""
    grid = grid_shape(semi_axes_mm, spacing)
    axes = []
    starts = []
    for n, a, s in zip(grid, semi_axes_mm, spacing, strict=True):
        centre = n // 2
        reach = int(np.floor(a / s))
        start = max(0, centre - reach)
        stop = min(n, centre + reach + 1)
        coords = (np.arange(start, stop) - centre) * s / a
        axes.append((coords**2).astype(np.float32))
        starts.append(start)
    distance = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    return Shape(distance <= 1.0, tuple(starts))  # type: ignore[arg-type]


def displacement_field(
    control_mm: np.ndarray, grid: tuple[int, int], spacing: tuple[float, float]
) -> np.ndarray:
    """Displacement in voxels over a 2-D grid, cubic-B-spline interpolated from a 3×3 control grid.

    Args:
        control_mm: array (2, 3, 3): displacement along each of the two axes at the control
            points, in mm. Control points sit at the grid's edges and centre.
        grid: the grid size (n_p, n_q) in voxels.
        spacing: voxel size along the two axes, mm.
    """
    # Cubic B-spline interpolation is linear in the control values and separable, so the field
    # is W_p · C · W_qᵀ with 1-D weight matrices (same numbers as a 2-D spline interpolation).
    weights_p, weights_q = (_spline_weights(n) for n in grid)
    field = np.matmul(np.matmul(weights_p, control_mm), weights_q.T)
    field[0] /= spacing[0]
    field[1] /= spacing[1]
    return field


@functools.lru_cache(maxsize=512)
def _spline_weights(n: int) -> np.ndarray:
    """(n, 3) weights of a cubic B-spline through 3 control points spread over n voxels."""
    positions = (
        np.linspace(0.0, CONTROL_POINTS - 1.0, n) if n > 1 else np.full(1, (CONTROL_POINTS - 1) / 2)
    )
    weights = np.empty((n, CONTROL_POINTS))
    for k in range(CONTROL_POINTS):
        unit = np.zeros(CONTROL_POINTS)
        unit[k] = 1.0
        weights[:, k] = ndimage.map_coordinates(unit, positions[None, :], order=3, mode="mirror")
    weights.flags.writeable = False
    return weights


def deform(
    shape: Shape, grid: tuple[int, int, int], axes: tuple[int, int], field: np.ndarray
) -> Shape:
    """Resample ``shape`` (nearest neighbour) so output voxel x takes input voxel x + d(x).

    ``field`` is the (2, n_p, n_q) displacement in voxels over the full grid's axes ``axes``;
    it is the same for every position along the third axis. Only output voxels whose source can
    lie inside ``shape`` are computed: everything else is empty in the full computation too.
    """
    p, q = axes
    r = 3 - p - q
    reach = int(np.ceil(np.abs(field).max())) + 1
    start = list(shape.offset)
    stop = list(shape.stop)
    for axis in (p, q):
        start[axis] = max(0, start[axis] - reach)
        stop[axis] = min(grid[axis], stop[axis] + reach)
    window = (slice(start[p], stop[p]), slice(start[q], stop[q]))
    size_p, size_q, size_r = (shape.mask.shape[a] for a in (p, q, r))
    source_p = np.rint(field[0][window] + np.arange(start[p], stop[p])[:, None]).astype(np.intp)
    source_q = np.rint(field[1][window] + np.arange(start[q], stop[q])).astype(np.intp)
    source_p -= shape.offset[p]
    source_q -= shape.offset[q]
    # One unsigned comparison per axis: negative indices wrap to huge values.
    inside = source_p.view(np.uintp) < size_p
    inside &= source_q.view(np.uintp) < size_q
    # The source as rows along the third axis, plus one empty row for sources outside it:
    # then the resampling is a single gather of whole rows.
    rows = np.empty((size_p * size_q + 1, size_r), dtype=bool)
    rows[:-1].reshape(size_p, size_q, size_r)[...] = shape.mask.transpose(p, q, r)
    rows[-1] = False
    source_p *= size_q
    source_p += source_q
    index = np.where(inside, source_p, size_p * size_q)
    filled = _rows_filled(rows)[index]
    if not filled.any():
        return Shape(np.zeros((0, 0, 0), dtype=bool), shape.offset)
    used_p = np.flatnonzero(filled.any(axis=1))
    used_q = np.flatnonzero(filled.any(axis=0))
    crop_p = slice(int(used_p[0]), int(used_p[-1]) + 1)
    crop_q = slice(int(used_q[0]), int(used_q[-1]) + 1)
    moved = np.take(rows, index[crop_p, crop_q], axis=0)
    mask = np.ascontiguousarray(moved.transpose(np.argsort((p, q, r))))
    offset = list(shape.offset)
    offset[p], offset[q] = start[p] + crop_p.start, start[q] + crop_q.start
    return Shape(mask, tuple(offset))  # type: ignore[arg-type]


def _rows_filled(rows: np.ndarray) -> np.ndarray:
    """``rows.any(axis=1)`` for a 2-D boolean array, via argmax (several times faster)."""
    first = rows.argmax(axis=1)
    return rows[np.arange(rows.shape[0]), first]


def _crop(shape: Shape) -> Shape:
    """Drop empty borders (keeps the final mask tight)."""
    mask = shape.mask
    plane = mask.any(axis=0)  # an OR of slabs: cheap, unlike a reduction along rows
    profiles = (
        _rows_filled(mask.reshape(mask.shape[0], -1)),
        _rows_filled(plane),
        plane.any(axis=0),
    )
    bounds = []
    for profile in profiles:
        filled = np.flatnonzero(profile)
        if filled.size == 0:
            return Shape(np.zeros((0, 0, 0), dtype=bool), shape.offset)
        bounds.append(slice(int(filled[0]), int(filled[-1]) + 1))
    offset = tuple(o + b.start for o, b in zip(shape.offset, bounds, strict=True))
    return Shape(mask[tuple(bounds)], offset)  # type: ignore[arg-type]


def tumor_shape(semi_axes_mm, displacements_mm: np.ndarray, spacing) -> Shape:
    """An elastically deformed ellipsoid; offset relative to its grid's centre voxel.

    Args:
        semi_axes_mm: the three semi-axes, mm.
        displacements_mm: array (3, 2, 3, 3): control displacements (mm) of the three passes.
        spacing: voxel size, mm.

    Returns:
        The shape, with ``offset`` measured from the grid's centre voxel, so that pasting it at
        ``centre + offset`` centres the tumor on ``centre``.
    """
    grid = grid_shape(semi_axes_mm, spacing)
    displacements = np.asarray(displacements_mm, dtype=np.float64).reshape(3, 2, 3, 3)
    fields = [
        displacement_field(control, (grid[p], grid[q]), (spacing[p], spacing[q]))
        for control, (p, q) in zip(displacements, DEFORM_AXIS_PAIRS, strict=True)
    ]
    shape = rasterize_ellipsoid(semi_axes_mm, spacing)
    for field, (p, q) in zip(fields, DEFORM_AXIS_PAIRS, strict=True):
        shape = deform(shape, grid, (p, q), field)
        if shape.mask.size == 0:
            break
    # Each pass crops along the axes it moves; a final crop trims the third.
    if shape.mask.size:
        shape = _crop(shape)
    centre = tuple(n // 2 for n in grid)
    return Shape(shape.mask, tuple(o - c for o, c in zip(shape.offset, centre, strict=True)))  # type: ignore[arg-type]
