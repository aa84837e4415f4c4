"""The drawn anatomy: body outline and wall, diaphragm, liver lobes and the organ layout.

``sample_*`` draw the parameters from a generator; the distance functions turn them into
signed distances (mm, negative inside) at world coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from syntumor_core.phantom.geometry import ellipsoid_distance, rotation_matrix, smooth_min


@dataclass(frozen=True)
class Body:
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
class Liver:
    """Lobes of the liver as ellipsoids and a tapering left lobe (mm)."""

    right: tuple  # (centre, semi-axes, egg taper)
    posterior: tuple  # (centre, semi-axes)
    caudate: tuple  # (centre, semi-axes)
    quadrate: tuple  # (centre, semi-axes)
    left: tuple  # (root x, tip x, centre y, centre z, semi-axis y, semi-axis z)
    inferior_plane: tuple  # (z at y0, y0, dz/dy): the liver lies above it
    bump_mm: float


def body_outline(body: Body, theta):
    """Radius of the body outline (mm) at polar angle ``theta`` (x = right, y = anterior)."""
    cos, sin = np.cos(theta), np.sin(theta)
    semi_y = np.where(sin >= 0, np.float32(body.anterior), np.float32(body.posterior))
    exponent = 2.4
    radius = (np.abs(cos / body.half_width) ** exponent + np.abs(sin / semi_y) ** exponent) ** (
        -1.0 / exponent
    )
    wobble = sum(float(a) * np.cos(float(k) * theta + float(p)) for k, a, p in body.harmonics)
    return radius * (1.0 + wobble)


def wall_depths(body: Body, theta) -> tuple:
    """Depths (mm below the skin) of the fat, muscle and cavity boundaries at ``theta``."""
    cos2 = np.cos(theta) ** 2
    anterior = np.clip(np.sin(theta), 0.0, None)
    fat = 2.5 + body.adiposity * (13.0 + 11.0 * cos2 + 7.0 * anterior)
    muscle = fat + 10.0 + 5.0 * cos2
    return 2.5, fat, muscle


def spine_block(body: Body, x, y):
    """Signed distance (mm, negative inside) to the block of spine, psoas and back muscles.

    A trapezoid behind the front of the vertebral bodies, widening backwards; organs stay out.
    """
    front = y - (body.spine_y + 16.0)
    half_width = 36.0 + 0.3 * (body.spine_y + 16.0 - y)
    return np.maximum(front, np.abs(x) - half_width)


def cavity_distance(body: Body, x, y, z):
    """Distance (mm, negative inside) to the inner surface of the body wall and spine block."""
    rho, theta = np.hypot(x, y), np.arctan2(y, x)
    scale = 1.0 + body.taper_per_mm * z
    radial = rho + wall_depths(body, theta)[2] - scale * body_outline(body, theta)
    return np.maximum(radial, -spine_block(body, x, y))


def diaphragm(body: Body, x, y) -> tuple:
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


def in_abdomen(body: Body, x, y, z):
    """Inside the abdominal cavity: within the body wall and below the diaphragm."""
    height, half = diaphragm(body, x, y)
    return (cavity_distance(body, x, y, z) < 0) & (z < height - half)


def liver_distance(body: Body, liver: Liver, x, y, z, bump):
    """Approximate signed distance (mm, negative inside) to the liver surface."""
    centre, axes, egg = liver.right
    taper = np.clip(1.0 + egg * (z - centre[2]) / axes[2], 0.55, 1.3)
    scaled = (axes[0] * taper, axes[1] * taper, axes[2])
    distance = ellipsoid_distance(x, y, z, centre, scaled, scale=float(min(axes)))
    distance = smooth_min(distance, ellipsoid_distance(x, y, z, *liver.posterior), 15.0)
    distance = smooth_min(distance, ellipsoid_distance(x, y, z, *liver.caudate), 10.0)
    distance = smooth_min(distance, ellipsoid_distance(x, y, z, *liver.quadrate), 10.0)
    root_x, tip_x, left_y, left_z, semi_y, semi_z = liver.left
    along = np.clip((x - tip_x) / (root_x - tip_x), 0.0, 1.0)
    thickness = np.clip(along, 0.04, 1.0) ** 0.7
    q = np.hypot(
        (y - left_y) / (semi_y * thickness), (z - left_z + 12.0 * along) / (semi_z * thickness)
    )
    left = np.maximum((q - 1.0) * semi_z * thickness, tip_x - x)
    distance = smooth_min(distance, left, 12.0) + bump
    plane_z, plane_y, slope = liver.inferior_plane
    distance = np.maximum(distance, plane_z + slope * (y - plane_y) - z)
    height, half = diaphragm(body, x, y)
    distance = np.maximum(distance, z - (height - half))
    return np.maximum(distance, cavity_distance(body, x, y, z))


def sample_body(rng: np.random.Generator) -> Body:
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
    return Body(
        half_width=(138.0 + 2.5 + 24.0 * adiposity) * size,
        anterior=(98.0 + 2.5 + 20.0 * adiposity) * size,
        posterior=58.0 + 2.5 + 13.0 * adiposity - spine_y,
        harmonics=harmonics,
        taper_per_mm=rng.uniform(0.0002, 0.0006),
        adiposity=adiposity,
        spine_y=spine_y,
        domes=domes,
    )


def sample_liver(rng: np.random.Generator) -> Liver:
    """Draw the liver's lobes: a common scale, a small shift, the left lobe's length."""
    scale = rng.uniform(0.95, 1.03)
    shift = (rng.normal(0, 3), rng.normal(0, 3), 0.0)

    def place(point, semi_axes) -> tuple:
        centre = tuple(float(p * scale + d) for p, d in zip(point, shift, strict=True))
        return centre, tuple(float(a * scale) for a in semi_axes)

    left_length = rng.uniform(0.85, 1.15)
    return Liver(
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


def sample_layout(rng: np.random.Generator, body: Body) -> dict:
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
                   rotation_matrix((0.0, 0.0, 25.0 + rng.normal(0, 5))), spleen_centre + (62, 34, 0),
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


def _lung_vessel_segments(rng: np.random.Generator, body: Body, count: int = 60) -> np.ndarray:
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
