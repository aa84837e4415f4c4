"""Steps of profile ``realistic``: vessel detection, mass effect (inside the organ only),
enhancing rim and capsule (partial-volume weights).

The paper describes these (used for its Visual Turing Test images) but the release left them
out because they took about 5 s per tumor. Here each works on a small box around the tumor.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from syntumor_core.synthesis import separable
from syntumor_core.synthesis.config import RealisticSpec
from syntumor_core.synthesis.inputs import row_ordered

Box = tuple[slice, slice, slice]
_PARALLEL_POINTS = 200_000  # below this, a second thread costs more than it saves


def _box_size(radius_mm: float, spacing) -> tuple[int, ...]:
    """Odd box sizes reaching ``radius_mm`` each way: floor(radius / s) voxels, but at least
    one where radius >= s / 2, so that a margin or rim does not vanish on coarse axes."""
    return tuple(
        2 * max(int(np.floor(radius_mm / s)), int(radius_mm >= 0.5 * s)) + 1 for s in spacing
    )


@dataclass(frozen=True, eq=False)
class VesselDetector:
    """Contrast-enhanced vessels inside an organ, by a threshold on smoothed intensity.

    The threshold is the organ's median plus ``k`` robust standard deviations (1.4826 · MAD)
    of its intensities after a 1 mm Gaussian smoothing, so it adapts to the scan's contrast
    phase and noise. The vessels are then dilated by ``margin_mm`` (a box, per axis).
    """

    vessels: np.ndarray  # dilated vessel mask over ``box``
    box: Box
    threshold_hu: float

    @classmethod
    def fit(
        cls, image, organ_mask, organ_box: Box, spacing, spec: RealisticSpec, known=None
    ) -> VesselDetector:
        """Detect vessels in the organ's box; ``known`` (a vessel mask, e.g. from a vessel
        segmentation) is added to what the threshold finds, before the dilation.
        ``organ_mask`` covers the volume or just ``organ_box``."""
        sigma = [1.0 / s for s in spacing]
        region = row_ordered(image[organ_box])
        smoothed = separable.gaussian_filter(region, sigma, truncate=2.5)
        organ = organ_mask if organ_mask.shape == region.shape else organ_mask[organ_box]
        values = smoothed[organ]
        values = values[:: max(1, values.size // 200_000)]
        median = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - median)))
        threshold = median + spec.vessel_threshold_sd * max(spread, 1.0)
        vessels = (smoothed > threshold) & organ
        if known is not None:
            vessels |= known[organ_box]
        if spec.vessel_margin_mm > 0:
            size = _box_size(spec.vessel_margin_mm, spacing)
            vessels = separable.dilate_box(vessels, size)
        return cls(vessels, organ_box, threshold)

    def mask(self, box: Box) -> np.ndarray:
        """Dilated vessel voxels in ``box`` (volume indices); none outside the organ's box."""
        out = np.zeros([b.stop - b.start for b in box], dtype=bool)
        src, dst = [], []
        for b, o in zip(box, self.box, strict=True):
            start, stop = max(b.start, o.start), min(b.stop, o.stop)
            if start >= stop:
                return out
            src.append(slice(start - o.start, stop - o.start))
            dst.append(slice(start - b.start, stop - b.start))
        out[tuple(dst)] = self.vessels[tuple(src)]
        return out


def max_displacement_mm(radius_mm: float, spec: RealisticSpec) -> float:
    """The largest shift of :func:`radial_warp`: max over r of A · r · (1 − (r/L)²)²,
    reached at r = L / √5, i.e. A · L · 0.2862."""
    reach = float(spec.mass_effect_reach * radius_mm)
    return float(spec.mass_effect) * reach * (5.0**-0.5) * 0.64


def warp_margin(radius_mm: float, spec: RealisticSpec, spacing) -> list[int]:
    """Voxels beyond the warp's sphere that :func:`radial_warp` needs to see, per axis: the
    fade (largest shift) plus two voxels, so that the domain's boundary is known there."""
    fade = max_displacement_mm(radius_mm, spec) + min(spacing)
    return [int(np.ceil(fade / s)) + 2 for s in spacing]


def radial_warp(
    image: np.ndarray,
    domain: np.ndarray,
    centre_mm: np.ndarray,
    radius_mm: float,
    spec: RealisticSpec,
    spacing,
) -> None:
    """Push the tissue of ``domain`` outward from ``centre_mm`` (mm within the arrays), in place.

    Output voxel x samples the input at c + (x − c)(1 − s(r) · f(x)) with
    s(r) = A (1 − (r/L)²)² for r < L and 0 beyond, A = ``spec.mass_effect``,
    L = ``spec.mass_effect_reach`` · radius. The map is monotonic in r for A < 1 (nothing
    folds), smooth in r, and the identity from distance L on.

    Only voxels of ``domain`` (the organ minus protected voxels) move, and each samples only
    inside it. With d the chessboard distance (in voxels) from x to the nearest voxel outside
    the domain, every voxel within d − 1 index steps of x is in the domain; a sampled point at
    most (d − 2) · s_min mm from x has all its interpolation neighbours there. The largest
    shift of the map is F (:func:`max_displacement_mm`), so the shift is multiplied by
    f(x) = clip((d − 2) · s_min / F, 0, 1): it fades to zero over a layer about F wide along
    the domain's boundary and is zero at the organ's boundary. Voxels outside the domain, and
    the organ label, never change. Give arrays that reach :func:`warp_margin` beyond the sphere
    of radius L, so that the domain's boundary is seen wherever the fade needs it (arrays
    clipped by the volume's edge are fine: sampled points lie between x and c, inside it).
    """
    reach = float(spec.mass_effect_reach * radius_mm)
    axes = [
        np.arange(n, dtype=np.float32) * np.float32(s) - np.float32(c)
        for n, s, c in zip(image.shape, spacing, centre_mm, strict=True)
    ]
    squared = (
        axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    )
    inside = squared < np.float32(reach**2)
    inside &= domain
    moving = _true_indices(inside)
    if moving[0].size == 0:
        return
    strength = np.float32(spec.mass_effect)
    shift = strength * (np.float32(1.0) - squared.ravel()[moving[3]] / np.float32(reach**2)) ** 2
    if not domain.all():
        finest = float(min(spacing))
        fade = max(max_displacement_mm(radius_mm, spec), 1e-6)
        count = int(np.ceil(fade / finest)) + 2  # levels beyond this leave the shift whole
        levels = _chessboard_levels(domain, count).ravel()[moving[3]]
        clearance = (levels.astype(np.float32) - np.float32(2.0)) * np.float32(finest / fade)
        shift *= np.clip(clearance, 0.0, 1.0)
    keep = np.float32(1.0) - shift
    coordinates = np.empty((3, keep.size), dtype=np.float32)
    for axis, (c, s) in enumerate(zip(centre_mm, spacing, strict=True)):
        coordinates[axis] = (np.float32(c) + axes[axis][moving[axis]] * keep) / np.float32(s)
        # Mode "nearest": positions beyond the edge take the edge's value.
        np.clip(coordinates[axis], 0.0, image.shape[axis] - 1.0, out=coordinates[axis])
    image[moving[:3]] = _linear_at(np.ascontiguousarray(image), coordinates)


def _chessboard_levels(domain: np.ndarray, count: int) -> np.ndarray:
    """The chessboard distance (voxels) from each voxel to the nearest voxel outside
    ``domain``, capped at ``count`` (0 outside the domain), by repeated 3×3×3 erosions.

    Beyond the array counts as outside: near the array's faces the levels are lower than the
    true distance, which only ever makes the warp's shift smaller there (safe).
    """
    levels = np.zeros(domain.shape, dtype=np.uint8)
    current = np.asarray(domain, dtype=bool)
    for _ in range(count):
        levels += current
        if not current.any():
            break
        current = separable.erode_box(current, (3, 3, 3))
    return levels


def _linear_at(volume: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """``ndimage.map_coordinates(volume, coordinates, order=1, mode="nearest")``, the points
    split over two threads when there are many (scipy releases the GIL while it
    interpolates; each point's value is computed alone, so the result is identical)."""

    def part(points: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(volume, points, order=1, mode="nearest", prefilter=False)

    count = coordinates.shape[1]
    if count < _PARALLEL_POINTS or (os.cpu_count() or 1) < 2:
        return part(coordinates)
    half = count // 2
    with ThreadPoolExecutor(max_workers=1) as pool:
        second = pool.submit(part, coordinates[:, half:])
        first = part(coordinates[:, :half])
        return np.concatenate([first, second.result()])  # re-raises the thread's error


def _true_indices(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.nonzero`` of a 3-D mask plus the flat indices, several times faster: the flat
    indices come from ``flatnonzero`` and the row of each from the per-row counts."""
    flat = np.flatnonzero(mask)
    counts = np.count_nonzero(mask.reshape(-1, mask.shape[2]), axis=1)
    rows = np.arange(mask.shape[0] * mask.shape[1])
    row = np.repeat(rows, counts)
    first = np.repeat(rows // mask.shape[1], counts)
    second = np.repeat(rows % mask.shape[1], counts)
    return first, second, flat - row * mask.shape[2], flat


def _depth_layers(tumor: np.ndarray, count: int) -> list[np.ndarray]:
    """The tumor's first ``count`` layers below its surface: layer j holds the voxels that the
    (j − 1)-th but not the j-th erosion by a 3×3×3 box keeps (j = 1 is the outermost)."""
    layers, current = [], np.asarray(tumor, dtype=bool)
    for _ in range(count):
        if not current.any():
            break
        core = separable.erode_box(current, (3, 3, 3))
        layers.append(current & ~core)
        current = core
    return layers


def layer_thickness_mm(spacing) -> float:
    """Depth one erosion layer stands for: the geometric mean of the spacing."""
    return float(np.prod(spacing)) ** (1.0 / 3.0)


def capsule_rim(tumor: np.ndarray, width_mm: float, spacing) -> np.ndarray:
    """Partial-volume weight (0..1) of a rim ``width_mm`` thick along the inside of the
    tumor's surface.

    Layer j (j = 1 outermost) covers depths [(j − 1) t, j t] with t the layer thickness
    (:func:`layer_thickness_mm`); its weight is the part of that depth range inside the rim,
    clip(width − (j − 1) t, 0, t) / t. A rim thinner than a voxel thus paints the outer layer
    with weight width / t, not as a full voxel.
    """
    thickness = layer_thickness_mm(spacing)
    count = int(np.ceil(width_mm / thickness)) if width_mm > 0 else 0
    weight = np.zeros(tumor.shape, dtype=np.float32)
    for j, layer in enumerate(_depth_layers(tumor, count)):
        weight[layer] = np.clip(width_mm - j * thickness, 0.0, thickness) / thickness
    return weight


def enhancing_rim(tumor: np.ndarray, width_mm: float, spacing) -> np.ndarray:
    """Partial-volume weight (0..1) of a rim whose strength decays as exp(−z / width) with the
    depth z (mm) below the tumor's surface (peripheral enhancement: brightest at the edge).

    Layer j's weight is the mean of that profile over its depths [(j − 1) t, j t]:
    (width / t) · (exp(−(j − 1) t / width) − exp(−j t / width)), so a rim thinner than a
    voxel gives the outer layer about width / t, not a full voxel; layers beyond four widths
    (weight under 2 %) are left out.
    """
    weight = np.zeros(tumor.shape, dtype=np.float32)
    if width_mm <= 0:
        return weight
    thickness = layer_thickness_mm(spacing)
    count = max(1, int(np.ceil(4.0 * width_mm / thickness)))
    for j, layer in enumerate(_depth_layers(tumor, count)):
        value = (width_mm / thickness) * (
            np.exp(-j * thickness / width_mm) - np.exp(-(j + 1) * thickness / width_mm)
        )
        weight[layer] = value
    return weight
