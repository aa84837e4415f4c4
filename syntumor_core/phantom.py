"""Procedural abdominal CT phantoms: SynTumor's embedded default data.

A phantom is a portal-venous-phase abdominal CT built from analytic shapes defined in
millimetres: body outline, skin, subcutaneous and visceral fat, muscle (abdominal wall, psoas,
paraspinal), spine and ribs, lung bases and the heart above the diaphragm, a liver of lobar
shape with portal and hepatic vessel trees, gallbladder, spleen, kidneys with cortex, medulla
and sinus fat, pancreas, aorta, inferior vena cava, portal/splenic veins, stomach, duodenum,
colon and small bowel. Intensities follow ``shared/spec/phantom.md``; organs carry a smooth
low-frequency texture, and the whole image carries slightly correlated noise.

Orientation: arrays are indexed ``(x, y, z)`` and the affine is ``diag(spacing)`` with an
origin that puts world ``(0, 0, 0)`` at the centre of the field of view, so the volume is
RAS+: +x points to the patient's Right, +y Anterior and +z Superior (DICOM's LPS negates x and
y). The liver therefore lies at positive world x, the spleen at negative x, the spine at
negative y; world z = 0 is (within a few mm) the liver's cranio-caudal centre, so the default
field of view (18 cm) holds the whole liver and a 10 cm one its central 1.2–1.4 litres.

Anatomy does not depend on the grid: the same seed at another shape or spacing gives the same
anatomy resampled; only the image noise and a 3-tap partial-volume blur are per voxel. Each
part of the anatomy draws from its own child generator of ``default_rng(seed)``.

Example:
    >>> phantom = make_phantom(seed=3, shape=(96, 96, 48), spacing=(4.0, 4.0, 4.0))
    >>> bool(phantom.organ_mask("liver").any())
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

from syntumor_core.errors import ParameterError
from syntumor_core.volume import Volume

logger = logging.getLogger(__name__)

LABELS: dict[str, int] = {
    "liver": 1,
    "spleen": 2,
    "kidney_right": 3,
    "kidney_left": 4,
    "pancreas": 5,
    "aorta": 6,
    "ivc": 7,
}

# Portal-venous-phase attenuation of each tissue in HU (shared/spec/phantom.md).
TISSUE_HU = {
    "air": -1000.0, "lung": -860.0, "fat": -100.0, "visceral_fat": -95.0, "skin": 30.0,
    "muscle": 50.0, "liver": 115.0, "spleen": 120.0, "cortex": 175.0, "medulla": 125.0,
    "sinus_fat": -70.0, "urine": 10.0, "pancreas": 105.0, "artery": 175.0, "vein": 165.0,
    "cancellous": 220.0, "cortical": 950.0, "disc": 85.0, "csf": 15.0, "bile": 8.0,
    "cartilage": 140.0, "bowel_wall": 75.0, "fluid": 18.0, "stool": 10.0,
    "myocardium": 100.0, "blood": 160.0, "table": 250.0,
}  # fmt: skip

_MIN_SHAPE = 16
_MAX_SHAPE = 2048
_SPACING_RANGE_MM = (0.2, 10.0)
_BSPLINE_SD_3D = (151.0 / 315.0) ** 1.5  # mean s.d. of a cubic B-spline field of unit coefficients


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic abdominal CT and its organ labels.

    Args:
        image: float32 HU volume (RAS+ affine, mm).
        labels: uint8 organ label map on the same grid (values of :data:`LABELS`; 0 = other).
        vessels: bool mask of contrast-enhanced portal and hepatic vessels inside the liver (a
            subset of the liver label, which covers the vessels as in LiTS/MSD label maps).
        seed: the seed the phantom was made from.
    """

    image: Volume
    labels: Volume
    vessels: np.ndarray
    seed: int

    def organ_mask(self, name: str) -> np.ndarray:
        """Boolean mask of organ ``name`` (a key of :data:`LABELS`).

        Args:
            name: organ name, e.g. ``"liver"`` or ``"kidney_left"``.
        """
        if name not in LABELS:
            raise ParameterError(f"unknown organ {name!r}; choose one of {sorted(LABELS)}")
        return self.labels.array == LABELS[name]


# ----------------------------------------------------------------------------- geometry


class _Grid:
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


class _SmoothField:
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

    def on_box(self, grid: _Grid, box) -> np.ndarray:
        return self.on_grid(*(axis[sl] for axis, sl in zip(grid.axes, box, strict=True)))


def _rotation(angles_deg) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx from angles about x, y, z in degrees."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _local(x, y, z, centre, rotation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates in a frame with origin ``centre`` and axes the columns of ``rotation``."""
    dx, dy, dz = x - float(centre[0]), y - float(centre[1]), z - float(centre[2])
    r = [[float(v) for v in row] for row in rotation]
    return tuple(r[0][k] * dx + r[1][k] * dy + r[2][k] * dz for k in range(3))  # type: ignore


def _ellipsoid_distance(x, y, z, centre, semi_axes, rotation=None, scale=None):
    """Approximate signed distance (mm, negative inside) to a (rotated) ellipsoid.

    ``semi_axes`` may be arrays broadcastable with the coordinates (tapered shapes); then
    ``scale`` (mm per unit of normalised radius) must be given.
    """
    if rotation is None:
        u, v, w = x - float(centre[0]), y - float(centre[1]), z - float(centre[2])
    else:
        u, v, w = _local(x, y, z, centre, rotation)
    a, b, c = (float(s) if np.ndim(s) == 0 else s for s in semi_axes)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    return (q - 1.0) * (float(min(a, b, c)) if scale is None else scale)


def _smooth_min(a, b, k: float):
    """Polynomial smooth minimum (smooth union of two distance fields)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _segments(points, radii) -> np.ndarray:
    """Consecutive capsule segments ``(x0, y0, z0, x1, y1, z1, r0, r1)`` of a polyline."""
    points = np.asarray(points, np.float64)
    radii = np.broadcast_to(np.asarray(radii, np.float64), (len(points),))
    return np.concatenate([points[:-1], points[1:], radii[:-1, None], radii[1:, None]], 1)


def _spline_path(control_points, radii, step_mm: float | None = None):
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


def _tube_depth(grid: _Grid, segments: np.ndarray, box=None):
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


# ----------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Body:
    """Body outline, wall layers and diaphragm (mm)."""

    half_width: float
    anterior: float
    posterior: float
    harmonics: np.ndarray  # rows (order, amplitude, phase) of the outline's wobble
    taper_per_mm: float
    adiposity: float
    spine_y: float
    domes: np.ndarray  # rows (x, y, apex height, radius of curvature) of the diaphragm domes


@dataclass(frozen=True)
class _Liver:
    """Lobes of the liver as ellipsoids and a tapering left lobe (mm)."""

    right: tuple  # (centre, semi-axes, egg taper)
    posterior: tuple  # (centre, semi-axes)
    caudate: tuple  # (centre, semi-axes)
    quadrate: tuple  # (centre, semi-axes)
    left: tuple  # (root x, tip x, centre y, centre z, semi-axis y, semi-axis z)
    inferior_plane: tuple  # (z at y0, y0, dz/dy): the liver lies above it
    bump_mm: float


def _outline(body: _Body, theta):
    """Radius of the body outline (mm) at polar angle ``theta`` (x = right, y = anterior)."""
    cos, sin = np.cos(theta), np.sin(theta)
    semi_y = np.where(sin >= 0, np.float32(body.anterior), np.float32(body.posterior))
    exponent = 2.4
    radius = (np.abs(cos / body.half_width) ** exponent + np.abs(sin / semi_y) ** exponent) ** (
        -1.0 / exponent
    )
    wobble = sum(float(a) * np.cos(float(k) * theta + float(p)) for k, a, p in body.harmonics)
    return radius * (1.0 + wobble)


def _wall_depths(body: _Body, theta) -> tuple:
    """Depths (mm below the skin) of the fat, muscle and cavity boundaries at ``theta``."""
    cos2 = np.cos(theta) ** 2
    anterior = np.clip(np.sin(theta), 0.0, None)
    fat = 2.5 + body.adiposity * (13.0 + 11.0 * cos2 + 7.0 * anterior)
    muscle = fat + 10.0 + 5.0 * cos2
    return 2.5, fat, muscle


def _spine_block(body: _Body, x, y):
    """Signed distance (mm, negative inside) to the block of spine, psoas and back muscles.

    A trapezoid behind the front of the vertebral bodies, widening backwards; organs stay out.
    """
    front = y - (body.spine_y + 16.0)
    half_width = 36.0 + 0.3 * (body.spine_y + 16.0 - y)
    return np.maximum(front, np.abs(x) - half_width)


def _cavity_distance(body: _Body, x, y, z):
    """Distance (mm, negative inside) to the inner surface of the body wall and spine block."""
    rho, theta = np.hypot(x, y), np.arctan2(y, x)
    scale = 1.0 + body.taper_per_mm * z
    radial = rho + _wall_depths(body, theta)[2] - scale * _outline(body, theta)
    return np.maximum(radial, -_spine_block(body, x, y))


def _diaphragm(body: _Body, x, y) -> tuple:
    """Height (mm) of the diaphragm's mid-surface over (x, y) and its vertical half-thickness.

    A smooth maximum of paraboloid domes: right and left hemidiaphragm, central tendon.
    """
    k = 6.0
    heights, slopes = [], []
    for dome_x, dome_y, apex, radius in body.domes:
        dx, dy = x - float(dome_x), y - float(dome_y)
        heights.append(float(apex) - (dx * dx + dy * dy) / (2.0 * float(radius)))
        slopes.append(np.hypot(dx, dy) / float(radius))
    top = np.maximum.reduce(heights)
    weights = [np.exp((h - top) / k) for h in heights]
    total = sum(weights)
    slope = sum(w * s for w, s in zip(weights, slopes, strict=True)) / total
    return top + k * np.log(total), 2.0 * np.sqrt(1.0 + slope * slope)


def _in_abdomen(body: _Body, x, y, z):
    """Inside the abdominal cavity: within the body wall and below the diaphragm."""
    height, half = _diaphragm(body, x, y)
    return (_cavity_distance(body, x, y, z) < 0) & (z < height - half)


def _liver_distance(body: _Body, liver: _Liver, x, y, z, bump):
    """Approximate signed distance (mm, negative inside) to the liver surface."""
    centre, axes, egg = liver.right
    taper = np.clip(1.0 + egg * (z - centre[2]) / axes[2], 0.55, 1.3)
    scaled = (axes[0] * taper, axes[1] * taper, axes[2])
    distance = _ellipsoid_distance(x, y, z, centre, scaled, scale=float(min(axes)))
    distance = _smooth_min(distance, _ellipsoid_distance(x, y, z, *liver.posterior), 15.0)
    distance = _smooth_min(distance, _ellipsoid_distance(x, y, z, *liver.caudate), 10.0)
    distance = _smooth_min(distance, _ellipsoid_distance(x, y, z, *liver.quadrate), 10.0)
    root_x, tip_x, left_y, left_z, semi_y, semi_z = liver.left
    along = np.clip((x - tip_x) / (root_x - tip_x), 0.0, 1.0)
    thickness = np.clip(along, 0.04, 1.0) ** 0.7
    q = np.hypot(
        (y - left_y) / (semi_y * thickness), (z - left_z + 12.0 * along) / (semi_z * thickness)
    )
    left = np.maximum((q - 1.0) * semi_z * thickness, tip_x - x)
    distance = _smooth_min(distance, left, 12.0) + bump
    plane_z, plane_y, slope = liver.inferior_plane
    distance = np.maximum(distance, plane_z + slope * (y - plane_y) - z)
    height, half = _diaphragm(body, x, y)
    distance = np.maximum(distance, z - (height - half))
    return np.maximum(distance, _cavity_distance(body, x, y, z))


def _sample_body(rng: np.random.Generator) -> _Body:
    """Draw the body: adiposity sets the fat rim and the outline, the spine sets the back."""
    adiposity = rng.uniform(0.75, 1.3)
    size = rng.uniform(0.97, 1.03)
    spine_y = -30.0 + rng.normal(0.0, 2.0)
    harmonics = np.column_stack(
        [np.arange(2, 6), rng.normal(0.0, 0.01, 4), rng.uniform(0, 2 * np.pi, 4)]
    )
    apex, radius = 74.0 + rng.normal(0.0, 2.0), rng.uniform(88.0, 100.0)
    domes = np.array(
        [
            [68.0, 0.0, apex, radius],  # right hemidiaphragm
            [-70.0, -5.0, apex - rng.uniform(10, 18), radius],  # left hemidiaphragm
            [-5.0, 30.0, apex - rng.uniform(14, 20), 1.6 * radius],  # central tendon
        ]
    )
    return _Body(
        half_width=(138.0 + 2.5 + 24.0 * adiposity) * size,
        anterior=(98.0 + 2.5 + 20.0 * adiposity) * size,
        posterior=58.0 + 2.5 + 13.0 * adiposity - spine_y,
        harmonics=harmonics,
        taper_per_mm=rng.uniform(0.0002, 0.0006),
        adiposity=adiposity,
        spine_y=spine_y,
        domes=domes,
    )


def _sample_liver(rng: np.random.Generator) -> _Liver:
    """Draw the liver's lobes: a common scale, a small shift, the left lobe's length."""
    scale = rng.uniform(0.95, 1.03)
    shift = (rng.normal(0, 3), rng.normal(0, 3), 0.0)

    def place(point, semi_axes) -> tuple:
        centre = tuple(float(p * scale + d) for p, d in zip(point, shift, strict=True))
        return centre, tuple(float(a * scale) for a in semi_axes)

    left_length = rng.uniform(0.85, 1.15)
    return _Liver(
        right=(*place((72, 10, 0), (70, 86, 72)), rng.uniform(0.15, 0.3)),
        posterior=place((94, -18, -42), (40, 44, 34)),
        caudate=place((20, -6, 18), (18, 20, 30)),
        quadrate=place((26, 40, -4), (30, 36, 34)),
        left=(
            45.0 * scale + shift[0],
            (45.0 - 135.0 * left_length) * scale + shift[0],
            45.0 * scale + shift[1],
            28.0 * scale,
            48.0 * scale,
            42.0 * scale,
        ),
        inferior_plane=(-80.0 * scale, -30.0, -rng.uniform(0.1, 0.2)),
        bump_mm=rng.uniform(3.0, 5.0),
    )


def _sample_layout(rng: np.random.Generator, body: _Body) -> dict:
    """Positions (mm) of the organs other than the liver; y is given for a spine at -30 mm."""
    dy = body.spine_y + 30.0

    def path(points, sd: float = 3.0) -> np.ndarray:
        offset = rng.normal(0.0, sd, 3) * (1.0, 1.0, 0.5) + (0.0, dy, 0.0)
        return np.asarray(points, np.float64) + offset

    def kidney(side: float, z: float):
        centre = np.array([72.0 * side, -42.0 + dy, z]) + rng.normal(0, 3, 3)
        long_axis = np.array([-0.22 * side, -0.2, 1.0])
        hilum = np.array([-side, 0.7, 0.0]) + rng.normal(0, 0.1, 3)
        return (
            centre,
            np.array([26.0, 22.0, 55.0]) * rng.uniform(0.92, 1.08),
            _frame(hilum, long_axis),
        )

    spleen_centre = np.array([-86.0, -32.0 + dy, 18.0]) + rng.normal(0, 3, 3)
    return {
        "aorta": (path([(-11, 1, 160), (-13, 0, 40), (-15, -1, -60), (-17, -3, -170)], 1.5),
                  12.0 * rng.uniform(0.9, 1.05)),
        "ivc": (path([(26, -10, -170), (25, -8, -60), (22, -3, 0), (16, 5, 50), (10, 10, 110)],
                     1.5), 11.0),
        "smv": (path([(7, 22, -170), (6, 20, -75), (4, 14, -44)], 1.0), 5.5),
        "splenic_vein": (path([(-74, -12, -6), (-50, 2, -22), (-22, 11, -34), (4, 14, -44)], 1.0),
                         4.5),
        "portal_vein": (path([(4, 14, -44), (20, 12, -30), (34, 10, -15)], 1.0), 7.0),
        "sma": (path([(-14, 10, -40), (-9, 18, -55), (-6, 16, -170)], 1.0), 3.5),
        "kidney_right": kidney(1.0, -56.0 + rng.normal(0, 4)),
        "kidney_left": kidney(-1.0, -40.0 + rng.normal(0, 4)),
        "spleen": (spleen_centre, np.array([24.0, 58.0, 52.0]) * rng.uniform(0.9, 1.1),
                   _rotation((0.0, 0.0, 25.0 + rng.normal(0, 5))), spleen_centre + (62, 34, 0),
                   62.0),
        "pancreas_head": (np.array([30.0, 2.0 + dy, -54.0]) + rng.normal(0, 2, 3), (17, 14, 22)),
        "pancreas": (path([(30, 4, -48), (12, 20, -40), (-10, 28, -36), (-35, 22, -30),
                           (-58, 8, -22), (-76, -8, -12)], 2.0), (13, 11, 10, 10, 9, 8)),
        "gallbladder": (path([(40, 26, -12), (50, 42, -32), (56, 52, -48)], 3.0), (6, 15, 14)),
        "stomach": (path([(-55, 5, 52), (-56, 30, 25), (-40, 55, -5), (-5, 62, -22),
                          (22, 55, -25), (38, 45, -22)]), (36, 36, 28, 20, 15, 10)),
        "duodenum": (path([(38, 45, -22), (52, 28, -30), (56, 10, -50), (52, 2, -70),
                           (30, 14, -86), (0, 28, -90), (-22, 28, -78)], 2.0), 11.0),
        "colon": (path([(92, -5, -170), (95, 8, -95), (86, 35, -64), (45, 70, -62),
                        (0, 76, -72), (-45, 62, -56), (-78, 35, -36), (-96, 5, -30),
                        (-100, -15, -70), (-98, -20, -170)]), 22.0),
        "small_bowel": [
            path(np.column_stack([rng.uniform(-65, 65, 7), rng.uniform(10, 70, 7),
                                  rng.uniform(-175, -95, 7)]), 0.0)
            for _ in range(5)
        ],
        "heart": (np.array([-32.0, 36.0 + dy, body.domes[0][2] + 40.0]), (58.0, 48.0, 62.0)),
        "ribs": rng.normal(0.0, 3.0, (2, 6)),
        "lung_vessels": _lung_vessel_segments(rng, body),
    }  # fmt: skip


def _lung_vessel_segments(rng: np.random.Generator, body: _Body, count: int = 60) -> np.ndarray:
    """Short tapering pulmonary vessels running down into the lung bases."""
    side = rng.choice([-1.0, 1.0], count)
    top = np.column_stack(
        [
            side * rng.uniform(25, 120, count),
            rng.uniform(-90, 60, count),
            body.domes[:, 2].max() + rng.uniform(-10, 60, count),
        ]
    )
    direction = np.column_stack(
        [side * rng.uniform(0.0, 0.5, count), rng.uniform(-0.5, 0.3, count), -np.ones(count)]
    )
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    bottom = top + rng.uniform(25, 70, (count, 1)) * direction
    radius = rng.uniform(1.2, 3.0, (count, 1))
    return np.concatenate([top, bottom, radius, 0.6 * radius], axis=1)


def _frame(toward_hilum, long_axis) -> np.ndarray:
    """Orthonormal frame (columns u, v, w): u toward ``toward_hilum``, w along ``long_axis``."""
    w = np.asarray(long_axis, np.float64) / np.linalg.norm(long_axis)
    u = np.asarray(toward_hilum, np.float64) - np.dot(toward_hilum, w) * w
    u /= np.linalg.norm(u)
    return np.column_stack([u, np.cross(w, u), w])


# ----------------------------------------------------------------------------- vessel trees


def _cone_directions(rng: np.random.Generator, headings, angles) -> np.ndarray:
    """Unit vectors at ``angles`` (radians, shape (n, m)) from each of ``headings`` (n, 3).

    The azimuths around each heading are random; the result has shape (n, m, 3).
    """
    h = np.asarray(headings, np.float64)
    h = h / np.linalg.norm(h, axis=1, keepdims=True)
    zero = np.zeros(len(h))
    e1 = np.where(
        (np.abs(h[:, 0]) < 0.9)[:, None],
        np.stack([zero, -h[:, 2], h[:, 1]], 1),
        np.stack([h[:, 2], zero, -h[:, 0]], 1),
    )
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(h, e1)
    angles = np.asarray(angles, np.float64)[..., None]
    azimuth = rng.uniform(0.0, 2 * np.pi, angles.shape)
    side = np.cos(azimuth) * e1[:, None] + np.sin(azimuth) * e2[:, None]
    return np.cos(angles) * h[:, None] + np.sin(angles) * side


def _grow_tree(rng, depth_at, root, heading, radius, *, min_radius=1.5, max_segments=120):
    """A tapering, branching vessel tree grown inside an organ from ``root`` along ``heading``.

    Generation by generation, every open branch tries 8 directions within 20° of its heading
    (and, failing those, 8 shorter ones within 60°) and keeps the one that stays deepest
    inside the organ (``depth_at(points)`` in mm, positive inside) and away from earlier
    branches; branches split with Murray's law (r³ = r₁³ + r₂³) and end below
    ``min_radius``. Returns capsule segments ``(x0, y0, z0, x1, y1, z1, r0, r1)``.
    """
    segments: list[np.ndarray] = []
    tips = [np.asarray(root, np.float64)]
    frontier = [(np.asarray(root, np.float64), np.asarray(heading, np.float64), radius)]
    reach = np.repeat([1.0, 0.6], 8)
    while frontier and len(segments) < max_segments:
        frontier = frontier[: max_segments - len(segments)]
        starts = np.array([f[0] for f in frontier])
        radii = np.array([f[2] for f in frontier])
        lengths = np.clip(radii * rng.uniform(4.0, 7.0, len(radii)), 7.0, 30.0)
        angles = rng.uniform(0.0, np.radians(np.repeat([20.0, 60.0], 8)), (len(radii), 16))
        directions = _cone_directions(rng, [f[1] for f in frontier], angles)
        ends = starts[:, None] + (lengths[:, None] * reach)[..., None] * directions
        points = np.concatenate([ends, 0.5 * (starts[:, None] + ends)]).reshape(-1, 3)
        depth = depth_at(points).reshape(2, len(radii), 16).min(0)
        crowd = np.linalg.norm(ends[:, :, None] - np.asarray(tips)[None, None], axis=3).min(2)
        score = np.minimum(depth, 10.0) + 0.5 * np.minimum(crowd, 20.0) + rng.uniform(0, 3, 16)
        score[depth < radii[:, None] + 0.5] = -np.inf
        score[:, 8:] -= 1000.0  # the fallback only when no narrow candidate fits
        best = np.argmax(score, axis=1)
        grows = np.isfinite(score[np.arange(len(radii)), best])
        chosen = directions[np.arange(len(radii)), best]
        children_dirs = _cone_directions(
            rng, chosen, rng.uniform([0.1, 0.7], [0.4, 1.2], (len(radii), 2))
        )
        split, share = rng.random(len(radii)) >= 0.2, rng.uniform(0.45, 0.75, len(radii))
        frontier = []
        for n in np.flatnonzero(grows):
            end, r_end = ends[n, best[n]], radii[n] * 0.96
            segments.append(np.r_[starts[n], end, radii[n], r_end])
            tips.append(end)
            if not split[n]:
                frontier.append((end, chosen[n], r_end))
                continue
            for child_r, child_dir in (
                (r_end * share[n] ** (1 / 3), children_dirs[n, 0]),
                (r_end * (1 - share[n]) ** (1 / 3), children_dirs[n, 1]),
            ):
                if child_r >= min_radius:
                    frontier.append((end, child_dir, child_r))
    return np.array(segments).reshape(-1, 8)


def _liver_trees(rng, body: _Body, liver: _Liver, layout: dict, bump: _SmoothField):
    """Portal tree from the hilum and hepatic-vein trees draining into the IVC (segments)."""

    def depth_at(points):
        return -_liver_distance(body, liver, *points.T, liver.bump_mm * bump.at_points(points))

    hilum = layout["portal_vein"][0][-1]
    ivc_points = layout["ivc"][0]
    confluence = ivc_points[np.argmin(np.abs(ivc_points[:, 2] - 52.0))]
    split = hilum + 16.0 * np.array([0.9, -0.2, 0.4])
    trunks = [
        (split, (0.6, 0.55, 0.55), 5.5, 14.0),  # right anterior portal vein
        (split, (0.75, -0.55, -0.35), 5.5, 14.0),  # right posterior portal vein
        (hilum, (-0.8, 0.5, 0.3), 6.0, 24.0),  # left portal vein (umbilical portion)
        (confluence, (1.0, -0.2, -0.3), 6.5, 20.0),  # right hepatic vein
        (confluence, (0.3, 1.0, -0.45), 6.0, 20.0),  # middle hepatic vein
        (confluence, (-0.7, 0.8, -0.2), 5.5, 20.0),  # left hepatic vein
    ]
    segments = [np.r_[hilum, split, 7.0, 6.5][None]]
    for start, heading, radius, length in trunks:
        heading = np.asarray(heading) / np.linalg.norm(heading)
        end = start + length * heading
        segments.append(np.r_[start, end, radius, radius][None])
        segments.append(_grow_tree(rng, depth_at, end, heading, radius * 0.95))
    return np.concatenate(segments)


# ----------------------------------------------------------------------------- painting


class _Canvas:
    """The image and label volumes being painted; later paint wins."""

    def __init__(self, grid: _Grid, fields: dict[str, _SmoothField]):
        self.grid = grid
        self.fields = fields
        self.image = np.empty(grid.shape, np.float32)
        self.labels = np.zeros(grid.shape, np.uint8)

    def paint(self, box, mask, hu, label: int = 0) -> None:
        view = self.image[box]
        view[mask] = hu if np.ndim(hu) == 0 else np.broadcast_to(hu, mask.shape)[mask]
        self.labels[box][mask] = label

    def texture(self, box, name: str = "coarse") -> np.ndarray:
        return self.fields[name].on_box(self.grid, box)


def _paint_layers(canvas: _Canvas, body: _Body) -> None:
    """Air, skin, subcutaneous fat, muscle wall, visceral fat, diaphragm, lungs, table."""
    grid = canvas.grid
    x, y, z = grid.axes[0][:, None], grid.axes[1][None, :], grid.axes[2]
    rho, theta = np.hypot(x, y), np.arctan2(y, x)
    outline = _outline(body, theta)
    scale = (1.0 + body.taper_per_mm * z).astype(np.float32)
    boundaries = np.stack([(rho + d) / outline for d in (0.0, *_wall_depths(body, theta))])
    boundaries = boundaries.astype(np.float32)[..., None]  # (4, nx, ny, 1): inside if < scale
    height, half = _diaphragm(body, x, y)
    lung_from, lung_to = (height - half)[..., None], (height + half)[..., None]
    lut = np.array(
        [TISSUE_HU[k] for k in ("air", "skin", "fat", "muscle", "visceral_fat", "lung", "muscle")],
        np.float32,
    )
    for row in range(grid.shape[0]):  # row by row: small, contiguous temporaries
        index = (boundaries[0, row] < scale).astype(np.uint8)
        for layer in boundaries[1:, row]:
            index += layer < scale
        cavity = index == 4
        index[cavity & (z >= lung_from[row])] = 6
        index[cavity & (z > lung_to[row])] = 5
        np.take(lut, index, out=canvas.image[row])
    table_top = -body.posterior * (1.0 + body.taper_per_mm * float(z.max())) - 12.0
    table = (np.abs(y - (table_top - 4.0 + 0.0015 * x * x)) < 4.0) & (np.abs(x) < 230.0)
    canvas.image[table] = TISSUE_HU["table"]


def _paint_back_muscles(canvas: _Canvas, body: _Body) -> None:
    """Paraspinal, psoas and quadratus lumborum muscles either side of the spine."""
    grid, ys = canvas.grid, body.spine_y
    back = -body.posterior + _wall_depths(body, -np.pi / 2)[1] + 1.0
    centre_y, semi_y = (back + ys - 22.0) / 2.0, (ys - 22.0 - back) / 2.0
    for side in (1.0, -1.0):
        box = grid.box((side * 30 - 28, back - 2, -400), (side * 30 + 28, ys, 400))
        if box is not None:
            x, y, z = grid.coords(box)
            inside = ((x - side * 30) / 25.0) ** 2 + ((y - centre_y) / semi_y) ** 2 < 1
            mask = np.broadcast_to(inside, tuple(s.stop - s.start for s in box))
            canvas.paint(box, mask, TISSUE_HU["muscle"] + 4.0 * canvas.texture(box))
        for centre_x, centre_dy, top, growth, ratio in (
            (24, 2, -15, 0.3, 0.85),
            (56, -16, -40, 0.25, 0.55),
        ):
            box = grid.box(
                (side * centre_x - 45, ys - 40, -400), (side * centre_x + 45, ys + 30, top)
            )
            if box is None:
                continue
            x, y, z = grid.coords(box)
            radius = np.clip(growth * (top - z), 0.0, 22.0) + 1e-3
            cx = side * (centre_x + 0.5 * radius)
            inside = ((x - cx) / radius) ** 2 + ((y - ys - centre_dy) / (ratio * radius)) ** 2 < 1
            canvas.paint(box, inside, TISSUE_HU["muscle"] + 4.0 * canvas.texture(box))


def _paint_tube(canvas, body, points, radii, *, wall_mm=0.0, content=None, hu=0.0, label=0):
    """Paint a smooth tube clipped to the abdomen: a wall and a lumen (``content(box)``)."""
    path, path_radii = _spline_path(points, radii)
    box, depth = _tube_depth(canvas.grid, _segments(path, path_radii))
    if box is None:
        return
    inside = (depth > 0) & _in_abdomen(body, *canvas.grid.coords(box))
    lumen = inside & (depth >= wall_mm)
    if wall_mm > 0:
        canvas.paint(box, inside & ~lumen, TISSUE_HU["bowel_wall"] + 8.0 * canvas.texture(box))
    canvas.paint(box, lumen, hu if content is None else content(box), label)


def _paint_bowel(canvas: _Canvas, body: _Body, layout: dict) -> None:
    """Small bowel (fluid), colon (gas and stool), duodenum and stomach (fluid, gas on top)."""
    grid = canvas.grid

    def fluid(box):
        return TISSUE_HU["fluid"] + 6.0 * canvas.texture(box, "fine")

    def stool(box):
        x = grid.coords(box)[0]
        mottle = canvas.texture(box, "fine")
        return np.where(
            mottle > 0.6 * np.tanh(-x / 40.0), TISSUE_HU["air"], TISSUE_HU["stool"] + 40 * mottle
        )

    def with_gas(level):
        return lambda box: np.where(grid.coords(box)[1] > level, TISSUE_HU["air"], fluid(box))

    for loop in layout["small_bowel"]:
        _paint_tube(canvas, body, loop, 12.0, wall_mm=2.5, content=fluid)
    _paint_tube(canvas, body, *layout["colon"], wall_mm=2.5, content=stool)
    _paint_tube(canvas, body, *layout["duodenum"], wall_mm=2.5, content=with_gas(38.0))
    _paint_tube(canvas, body, *layout["stomach"], wall_mm=4.0, content=with_gas(62.0))


def _paint_kidney(canvas: _Canvas, body: _Body, kidney, label: int) -> None:
    """Kidney: cortex, medullary pyramids, sinus fat and pelvis, with a medial hilum."""
    centre, axes, frame = kidney
    a, b, c = (float(v) for v in axes)
    box = canvas.grid.box(centre - c - 2, centre + c + 2)
    if box is None:
        return
    x, y, z = canvas.grid.coords(box)
    u, v, w = _local(x, y, z, centre, frame)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    notch = ((u - a) / (0.55 * a)) ** 2 + (v / (0.4 * b)) ** 2 + (w / (0.35 * c)) ** 2 < 1
    sinus = ((u - 0.45 * a) / (0.62 * a)) ** 2 + (v / (0.45 * b)) ** 2 + (w / (0.6 * c)) ** 2
    fan = np.arctan2(v / b, (u - 0.45 * a) / a)
    pyramid = np.cos(5.0 * fan) + np.cos(2.0 * np.pi * w / (0.42 * c)) > -0.7
    hu = np.where(
        sinus < 1,
        np.where(sinus < 0.25, TISSUE_HU["urine"], TISSUE_HU["sinus_fat"]),
        np.where((q < 0.78) & pyramid, TISSUE_HU["medulla"], TISSUE_HU["cortex"]),
    ) + 5.0 * canvas.texture(box)
    canvas.paint(box, (q < 1) & ~notch & _in_abdomen(body, x, y, z), hu, label)


def _paint_solid_organs(canvas: _Canvas, body: _Body, layout: dict) -> None:
    """Pancreas (head + lobulated tube), spleen (concave hilum) and both kidneys."""
    grid = canvas.grid
    head_centre, head_axes = layout["pancreas_head"]
    path, radii = _spline_path(*layout["pancreas"])
    segments = _segments(path, radii)
    box = grid.box(
        np.minimum(path.min(0) - 15, head_centre - 25),
        np.maximum(path.max(0) + 15, head_centre + 25),
    )
    if box is not None:
        x, y, z = grid.coords(box)
        _, tube = _tube_depth(grid, segments, box)
        depth = np.maximum(tube, -_ellipsoid_distance(x, y, z, head_centre, head_axes))
        depth += 2.0 * canvas.texture(box, "fine")
        mask = (depth > 0) & _in_abdomen(body, x, y, z)
        canvas.paint(
            box, mask, TISSUE_HU["pancreas"] + 6.0 * canvas.texture(box), LABELS["pancreas"]
        )
    centre, axes, rotation, hollow_centre, hollow_radius = layout["spleen"]
    box = grid.box(centre - axes.max() - 2, centre + axes.max() + 2)
    if box is not None:
        x, y, z = grid.coords(box)
        hollow = (x - hollow_centre[0]) ** 2 + (y - hollow_centre[1]) ** 2 + (
            z - hollow_centre[2]
        ) ** 2 < hollow_radius**2
        spleen = _ellipsoid_distance(x, y, z, centre, axes, rotation) < 0
        mask = spleen & ~hollow & _in_abdomen(body, x, y, z)
        canvas.paint(box, mask, TISSUE_HU["spleen"] + 5.0 * canvas.texture(box), LABELS["spleen"])
    for name in ("kidney_right", "kidney_left"):
        _paint_kidney(canvas, body, layout[name], LABELS[name])


def _paint_liver(canvas: _Canvas, body: _Body, liver: _Liver, layout: dict) -> None:
    """Liver parenchyma with its lobes, then the gallbladder in its fossa."""
    grid = canvas.grid
    apex = float(body.domes[:, 2].max())
    box = grid.box((liver.left[1] - 6, -100, -110), (body.half_width, body.anterior, apex))
    if box is not None:
        x, y, z = grid.coords(box)
        bump = liver.bump_mm * canvas.texture(box, "bump")
        mask = _liver_distance(body, liver, x, y, z, bump) < 0
        canvas.paint(box, mask, TISSUE_HU["liver"] + 6.0 * canvas.texture(box), LABELS["liver"])
    _paint_tube(canvas, body, *layout["gallbladder"], hu=TISSUE_HU["bile"])


def _paint_great_vessels(canvas: _Canvas, body: _Body, layout: dict) -> None:
    """Portal, splenic and superior mesenteric veins, SMA, then the aorta and the IVC."""
    for name, hu in (
        ("smv", "vein"),
        ("splenic_vein", "vein"),
        ("portal_vein", "vein"),
        ("sma", "artery"),
    ):
        _paint_tube(canvas, body, *layout[name], hu=TISSUE_HU[hu] + 5.0)
    grid = canvas.grid
    for name, hu in (("aorta", "artery"), ("ivc", "vein")):
        path, radii = _spline_path(*layout[name])
        box, depth = _tube_depth(grid, _segments(path, radii))
        if box is not None:
            canvas.paint(box, depth > 0, TISSUE_HU[hu] + 3.0 * canvas.texture(box), LABELS[name])


def _paint_liver_vessels(canvas: _Canvas, segments: np.ndarray) -> tuple:
    """Paint the vessel trees where they lie in the liver; returns the vessel mask and box."""
    vessels = np.zeros(canvas.grid.shape, bool)
    box, depth = _tube_depth(canvas.grid, segments)
    if box is not None:
        mask = (depth > 0) & (canvas.labels[box] == LABELS["liver"])
        canvas.paint(box, mask, TISSUE_HU["vein"] + 5.0 * canvas.texture(box), LABELS["liver"])
        vessels[box] = mask
    return vessels, box


def _paint_lung_vessels(canvas: _Canvas, body: _Body, segments: np.ndarray) -> None:
    """Pulmonary vessels, drawn only where the voxels are lung."""
    box, depth = _tube_depth(canvas.grid, segments)
    if box is not None:
        x, y, z = canvas.grid.coords(box)
        lung = (canvas.image[box] < -500) & (_cavity_distance(body, x, y, z) < 0)
        canvas.paint(box, (depth > 0) & lung, TISSUE_HU["blood"] - 40.0)


def _paint_heart(canvas: _Canvas, body: _Body, layout: dict) -> None:
    """The inferior heart above the diaphragm: myocardium, blood pool, pericardial fat."""
    centre, axes = layout["heart"]
    reach = np.asarray(axes) * 1.15
    box = canvas.grid.box(centre - reach, centre + reach)
    if box is None:
        return
    x, y, z = canvas.grid.coords(box)
    q = _ellipsoid_distance(x, y, z, centre, axes, scale=1.0) + 1.0
    height, half = _diaphragm(body, x, y)
    thorax = (z > height + half) & (_cavity_distance(body, x, y, z) < 0)
    hu = np.where(q < 0.8, TISSUE_HU["blood"], TISSUE_HU["myocardium"]) + 5.0 * canvas.texture(box)
    canvas.paint(box, thorax & (q < 1.1) & (q >= 1.0), TISSUE_HU["fat"])
    canvas.paint(box, thorax & (q < 1.0), hu)


def _paint_spine(canvas: _Canvas, body: _Body) -> None:
    """Vertebrae (cortical rim, cancellous core, posterior elements), discs, spinal canal."""
    grid, ys = canvas.grid, body.spine_y
    back = -body.posterior + _wall_depths(body, -np.pi / 2)[1] + 3.0
    box = grid.box((-45, back, -400), (45, ys + 17, 400))
    if box is None:
        return
    x, y, z = grid.coords(box)
    period, phase = 31.0, ((z + 7.0) % 31.0) / 31.0
    body_r = (x / 21.0) ** 2 + ((y - ys) / 16.0) ** 2
    canal_y = ys - 26.0
    canal = (x / 10.0) ** 2 + ((y - canal_y) / 8.5) ** 2 < 1
    arch = (
        ((x / 18.0) ** 2 + ((y - canal_y + 1.0) / 15.0) ** 2 < 1) & (phase > 0.2) & (phase < 0.85)
    )
    spinous = (
        (np.abs(x) < 3.5 + 0.1 * (y - back)) & (y < canal_y - 10) & ((phase + 0.25) % 1.0 > 0.45)
    )
    transverse = (
        (np.abs(x) > 10)
        & (np.abs(x) < 36 - 0.15 * np.abs(y - canal_y))
        & (np.abs(y - canal_y - 6) < 3.5)
        & (phase > 0.4)
        & (phase < 0.6)
    )
    disc_end = 7.0 / period
    disc = phase < disc_end
    endplate = (phase < disc_end + 1.5 / period) | (phase > 1.0 - 1.5 / period)
    shell = (body_r > (1.0 - 2.5 / 16.0) ** 2) | endplate
    bone = np.where(
        shell & ~disc,
        TISSUE_HU["cortical"],
        TISSUE_HU["cancellous"] + 35 * canvas.texture(box, "fine"),
    )
    hu = np.where(disc & (body_r < 1), TISSUE_HU["disc"], bone)
    canvas.paint(box, np.broadcast_to(body_r < 1, hu.shape), hu)
    posterior = (arch | spinous | transverse) & ~canal
    canvas.paint(box, posterior, 0.5 * (TISSUE_HU["cortical"] + TISSUE_HU["cancellous"]))
    canvas.paint(box, np.broadcast_to(canal, hu.shape), TISSUE_HU["csf"])


def _rib_paths(body: _Body, offsets: np.ndarray) -> tuple[list, list]:
    """Centre lines of ribs 7–12 on both sides: bony part and costal cartilage."""
    bones, cartilages = [], []
    ends = np.pi * np.array([0.97, 0.94, 0.88, 0.78, 0.6, 0.45])
    for s_index, side in enumerate((1.0, -1.0)):
        for k, end in enumerate(ends):
            top = 96.0 - 26.0 * k + offsets[s_index, k]
            phi = np.linspace(0.6, end, 24)
            z = top - 80.0 * (phi / np.pi) ** 1.5
            theta = np.arctan2(-np.cos(phi), side * np.sin(phi))
            rho = (1.0 + body.taper_per_mm * z) * _outline(body, theta)
            rho -= _wall_depths(body, theta)[1] + 6.0
            ring = np.column_stack([rho * np.cos(theta), rho * np.sin(theta), z])
            head = np.array([[side * 38.0, body.spine_y - 22.0, top + 8.0]])
            points = np.concatenate([head, ring])
            bony = np.r_[True, phi < 0.75 * np.pi]
            bones.append(points[bony])
            if not bony.all():
                cartilages.append(points[np.flatnonzero(~bony)[0] - 1 :])
    return bones, cartilages


def _paint_ribs(canvas: _Canvas, body: _Body, offsets: np.ndarray) -> None:
    """Ribs (cortical shell, marrow) and their costal cartilages."""
    bones, cartilages = _rib_paths(body, offsets)
    for paths, radius in ((cartilages, 4.0), (bones, 4.0)):
        segments = [_segments(*_spline_path(p, radius, 4.0)) for p in paths]
        box, depth = _tube_depth(canvas.grid, np.concatenate(segments))
        if box is None:
            continue
        if paths is cartilages:
            canvas.paint(box, depth > 0, TISSUE_HU["cartilage"])
        else:
            hu = np.where(depth < 1.3, TISSUE_HU["cortical"], 250.0)
            canvas.paint(box, depth > 0, hu)


def _blur_and_noise(image: np.ndarray, rng: np.random.Generator, noise_sd: float) -> np.ndarray:
    """Add white noise, then blur a little: partial-volume edges and correlated noise.

    The 3-tap Gaussian blur (sigma 0.6 voxel in-plane, 0.45 along z) stands for the scanner's
    point-spread function; it scales the noise s.d. by sqrt(prod(sum(k²))), which the gain
    undoes, so the final noise s.d. is ``noise_sd``.
    """
    kernels = [
        np.array([a, 1.0, a]) / (1.0 + 2.0 * a) for a in np.exp(-0.5 / np.square([0.6, 0.6, 0.45]))
    ]
    gain = noise_sd / np.sqrt(np.prod([np.sum(k**2) for k in kernels]))
    if noise_sd > 0:
        step = max(1, 4_000_000 // (image.shape[1] * image.shape[2]))
        for start in range(0, image.shape[0], step):
            slab = rng.standard_normal(
                (len(image[start : start + step]), *image.shape[1:]), dtype=np.float32
            )
            slab *= np.float32(gain)
            image[start : start + step] += slab
    buffer = np.empty_like(image)
    ndimage.correlate1d(image, kernels[0], axis=0, output=buffer, mode="nearest")
    ndimage.correlate1d(buffer, kernels[1], axis=1, output=image, mode="nearest")
    ndimage.correlate1d(image, kernels[2], axis=2, output=buffer, mode="nearest")
    return buffer


def _check_arguments(seed, shape, spacing, noise_sd) -> tuple:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        shape = tuple(int(n) for n in shape)
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as error:
        raise ParameterError(
            f"shape and spacing must be sequences of 3 numbers, got {shape!r}, {spacing!r}"
        ) from error
    if len(shape) != 3 or len(spacing) != 3:
        raise ParameterError(
            f"shape and spacing must have 3 values (x, y, z), got shape {shape} and spacing "
            f"{spacing}"
        )
    if any(n < _MIN_SHAPE or n > _MAX_SHAPE for n in shape):
        raise ParameterError(
            f"shape must be {_MIN_SHAPE}..{_MAX_SHAPE} voxels per axis, got {shape}"
        )
    low, high = _SPACING_RANGE_MM
    if not all(math.isfinite(s) and low <= s <= high for s in spacing):
        raise ParameterError(f"spacing must be {low}..{high} mm per axis, got {spacing}")
    if not (math.isfinite(noise_sd) and 0.0 <= noise_sd <= 200.0):
        raise ParameterError(f"noise_sd must be 0..200 HU, got {noise_sd}")
    return int(seed), shape, spacing, float(noise_sd)


def make_phantom(
    seed: int = 0,
    shape=(256, 256, 120),
    spacing=(1.5, 1.5, 1.5),
    *,
    noise_sd: float = 15.0,
    progress: Callable[[float], None] | None = None,
) -> Phantom:
    """Build a procedural portal-venous-phase abdominal CT phantom with organ labels.

    Args:
        seed: non-negative integer; the same seed gives the same phantom, and the same
            anatomy at any shape or spacing.
        shape: voxels along (x, y, z), each 16..2048.
        spacing: voxel size in mm along (x, y, z), each 0.2..10.
        noise_sd: standard deviation of the image noise in HU (0..200; 0 = noise-free).
        progress: called with the fraction done (0..1) a few times while building.

    Returns:
        A :class:`Phantom` (float32 HU image, uint8 labels of :data:`LABELS`, vessel mask).

    Raises:
        ParameterError: an argument is out of range.
    """
    seed, shape, spacing, noise_sd = _check_arguments(seed, shape, spacing, noise_sd)
    report = progress or (lambda fraction: None)
    report(0.0)
    # Independent streams, so that a change to one part leaves the others as they were.
    body_rng, liver_rng, layout_rng, field_rng, tree_rng, noise_rng = np.random.default_rng(
        seed
    ).spawn(6)
    body = _sample_body(body_rng)
    liver = _sample_liver(liver_rng)
    layout = _sample_layout(layout_rng, body)
    lo, hi = (-300.0, -300.0, -300.0), (300.0, 300.0, 300.0)
    fields = {
        name: _SmoothField(field_rng, lo, hi, step)
        for name, step in (("bump", 28.0), ("coarse", 14.0), ("fine", 5.0))
    }
    trees = _liver_trees(tree_rng, body, liver, layout, fields["bump"])
    canvas = _Canvas(_Grid(shape, spacing), fields)
    _paint_layers(canvas, body)
    _paint_back_muscles(canvas, body)
    report(0.2)
    _paint_bowel(canvas, body, layout)
    _paint_liver(canvas, body, liver, layout)
    _paint_solid_organs(canvas, body, layout)
    report(0.4)
    _paint_great_vessels(canvas, body, layout)
    vessels, vessel_box = _paint_liver_vessels(canvas, trees)
    _paint_heart(canvas, body, layout)
    _paint_lung_vessels(canvas, body, layout["lung_vessels"])
    _paint_spine(canvas, body)
    _paint_ribs(canvas, body, layout["ribs"])
    if vessel_box is not None:  # what was painted later is no longer liver
        vessels[vessel_box] &= canvas.labels[vessel_box] == LABELS["liver"]
    report(0.6)
    image = _blur_and_noise(canvas.image, noise_rng, noise_sd)
    report(1.0)
    affine = canvas.grid.affine
    logger.debug("phantom seed %d shape %s spacing %s built", seed, shape, spacing)
    return Phantom(
        Volume(image, affine.copy()), Volume(canvas.labels, affine.copy()), vessels, seed
    )
