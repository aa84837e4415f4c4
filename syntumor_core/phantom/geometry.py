"""Geometry of the phantom: the voxel grid, smooth random fields, distance functions, tubes.

Everything is in world millimetres (RAS+, origin at the centre of the field of view), so the
anatomy does not depend on the grid it is painted on.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

_BSPLINE_SD_3D = (151.0 / 315.0) ** 1.5  # mean s.d. of a cubic B-spline field of unit coefficients


class Grid:
    """Voxel-centre world coordinates (mm) of an axis-aligned RAS+ grid centred on 0."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        self.shape = shape
        self.spacing = spacing
        self.axes = [
            ((np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32)
            for n, s in zip(shape, spacing, strict=True)
        ]
        self.affine = np.diag([*spacing, 1.0])
        self.affine[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(shape, spacing, strict=True)]

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Slices of the voxels whose centres lie in the world box ``[lo, hi]``; None if empty."""
        slices = []
        for axis, low, high in zip(self.axes, lo, hi, strict=True):
            start = int(np.searchsorted(axis, low, "left"))
            stop = int(np.searchsorted(axis, high, "right"))
            if stop <= start:
                return None
            slices.append(slice(start, stop))
        return tuple(slices)  # type: ignore[return-value]

    def coords(self, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Open (broadcastable) world coordinate arrays of a box."""
        xs, ys, zs = (axis[sl] for axis, sl in zip(self.axes, box, strict=True))
        return xs[:, None, None], ys[None, :, None], zs[None, None, :]


class SmoothField:
    """A smooth random field of unit s.d.: a cubic B-spline with random coefficients.

    The lattice is fixed in world millimetres, so the field does not depend on the grid.
    """

    def __init__(self, rng: np.random.Generator, lo, hi, step_mm: float):
        self.step = float(step_mm)
        self.origin = np.asarray(lo, dtype=np.float64) - self.step
        count = np.ceil((np.asarray(hi) - np.asarray(lo)) / self.step).astype(int) + 4
        coefficients = rng.standard_normal(tuple(count), dtype=np.float32)
        self.coefficients = coefficients / np.float32(_BSPLINE_SD_3D)

    def _weights(self, positions: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        size = self.coefficients.shape[axis]
        u = (np.asarray(positions, np.float64) - self.origin[axis]) / self.step
        u = np.clip(u, 1.0, size - 2.0 - 1e-6)
        index = np.floor(u).astype(int)
        t = u - index
        weights = (
            np.stack(
                [(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], -1
            )
            / 6.0
        )
        return index[..., None] + np.arange(-1, 3), weights.astype(np.float32)

    def _matrix(self, positions: np.ndarray, axis: int) -> tuple[np.ndarray, slice]:
        """B-spline weight matrix of ``positions`` over the lattice indices they touch."""
        index, weights = self._weights(positions, axis)
        first, last = int(index.min()), int(index.max())
        matrix = np.zeros((len(positions), last - first + 1), np.float32)
        np.put_along_axis(matrix, index - first, weights, axis=1)
        return matrix, slice(first, last + 1)

    def on_grid(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Field values on the grid ``xs × ys × zs`` (1-D world coordinates), float32."""
        (mx, sx), (my, sy), (mz, sz) = (
            self._matrix(np.ravel(a), i) for i, a in enumerate((xs, ys, zs))
        )
        block = self.coefficients[sx, sy, sz]
        partial = my @ np.tensordot(mx, block, axes=(1, 0))  # (nx, ny, cz)
        flat = partial.reshape(-1, partial.shape[-1]) @ mz.T
        return flat.reshape(mx.shape[0], my.shape[0], mz.shape[0])

    def at_points(self, points: np.ndarray) -> np.ndarray:
        """Field values at world points of shape ``(N, 3)``."""
        points = np.atleast_2d(points)
        (ix, wx), (iy, wy), (iz, wz) = (self._weights(points[:, a], a) for a in range(3))
        _, size_y, size_z = self.coefficients.shape
        flat = (ix[:, :, None, None] * size_y + iy[:, None, :, None]) * size_z + iz[:, None, None]
        weights = wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]
        values = self.coefficients.ravel()[flat]
        return (weights * values).reshape(len(points), -1).sum(1, dtype=np.float64)

    def on_box(self, grid: Grid, box) -> np.ndarray:
        return self.on_grid(*(axis[sl] for axis, sl in zip(grid.axes, box, strict=True)))


def rotation_matrix(angles_deg) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx from angles about x, y, z in degrees."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def to_local(x, y, z, centre, rotation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates in a frame with origin ``centre`` and axes the columns of ``rotation``."""
    dx, dy, dz = x - float(centre[0]), y - float(centre[1]), z - float(centre[2])
    r = [[float(v) for v in row] for row in rotation]
    return tuple(r[0][k] * dx + r[1][k] * dy + r[2][k] * dz for k in range(3))  # type: ignore


def ellipsoid_distance(x, y, z, centre, semi_axes, rotation=None, scale=None):
    """Approximate signed distance (mm, negative inside) to a (rotated) ellipsoid.

    ``semi_axes`` may be arrays broadcastable with the coordinates (tapered shapes); then
    ``scale`` (mm per unit of normalised radius) must be given.
    """
    if rotation is None:
        u, v, w = x - float(centre[0]), y - float(centre[1]), z - float(centre[2])
    else:
        u, v, w = to_local(x, y, z, centre, rotation)
    a, b, c = (float(s) if np.ndim(s) == 0 else s for s in semi_axes)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    return (q - 1.0) * (float(min(a, b, c)) if scale is None else scale)


def smooth_min(a, b, k: float):
    """Polynomial smooth minimum (smooth union of two distance fields)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def capsule_segments(points, radii) -> np.ndarray:
    """Consecutive capsule segments ``(x0, y0, z0, x1, y1, z1, r0, r1)`` of a polyline."""
    points = np.asarray(points, np.float64)
    radii = np.broadcast_to(np.asarray(radii, np.float64), (len(points),))
    return np.concatenate([points[:-1], points[1:], radii[:-1, None], radii[1:, None]], 1)


def spline_path(control_points, radii, step_mm: float | None = None):
    """A smooth path through control points resampled every ``step_mm``; radii interpolated.

    The default step is half the smallest radius (2–8 mm), dense enough for a smooth tube.
    """
    if step_mm is None:
        step_mm = float(np.clip(0.5 * np.min(radii), 2.0, 8.0))
    control_points = np.asarray(control_points, np.float64)
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(control_points, axis=0), axis=1))]
    spline = CubicSpline(chord, control_points, bc_type="natural")
    count = max(int(chord[-1] / step_mm), 2) + 1
    params = np.linspace(0.0, chord[-1], count)
    return spline(params), np.interp(params, chord, np.broadcast_to(radii, chord.shape))


def tube_depth(grid: Grid, segments: np.ndarray, box=None):
    """Depth (mm, positive inside) in a union of tapered capsules.

    Computed on ``box`` (default: the tubes' bounding box); returns ``(box, depth)``, or
    ``(None, None)`` when the tubes miss the grid.
    """
    segments = np.asarray(segments, np.float64).reshape(-1, 8)
    reach = segments[:, 6:8].max(1, keepdims=True) + 1.0
    lows = np.minimum(segments[:, 0:3], segments[:, 3:6]) - reach
    highs = np.maximum(segments[:, 0:3], segments[:, 3:6]) + reach
    if box is None and len(segments):
        box = grid.box(lows.min(0), highs.max(0))
    if box is None:
        return None, None
    depth = np.full(tuple(s.stop - s.start for s in box), -1e3, np.float32)
    # index range of every segment's box, clipped to ``box`` (vectorised over segments)
    starts = np.stack([np.searchsorted(a, lows[:, i]) for i, a in enumerate(grid.axes)], 1)
    stops = np.stack([np.searchsorted(a, highs[:, i], "right") for i, a in enumerate(grid.axes)], 1)
    starts = np.maximum(starts, [b.start for b in box])
    stops = np.minimum(stops, [b.stop for b in box])
    for n in np.flatnonzero(np.all(stops > starts, axis=1)):
        sub = tuple(slice(int(a), int(b)) for a, b in zip(starts[n], stops[n], strict=True))
        local = tuple(
            slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, box, strict=True)
        )
        x, y, z = grid.coords(sub)
        x0, y0, z0, x1, y1, z1, r0, r1 = (float(v) for v in segments[n])
        vx, vy, vz = x1 - x0, y1 - y0, z1 - z0
        length2 = max(vx * vx + vy * vy + vz * vz, 1e-9)
        dx, dy, dz = x - x0, y - y0, z - z0
        t = np.clip((dx * vx + dy * vy + dz * vz) / length2, 0.0, 1.0)
        distance = np.sqrt((dx - t * vx) ** 2 + (dy - t * vy) ** 2 + (dz - t * vz) ** 2)
        np.maximum(depth[local], r0 + t * (r1 - r0) - distance, out=depth[local])
    return box, depth
