"""Steps of profile ``realistic``: vessel detection, mass effect and capsule.

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
        segmentation) is added to what the threshold finds, before the dilation."""
        sigma = [1.0 / s for s in spacing]
        smoothed = separable.gaussian_filter(image[organ_box], sigma, truncate=2.5)
        organ = organ_mask[organ_box]
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


def radial_warp(
    image: np.ndarray,
    organ: np.ndarray,
    centre_mm: np.ndarray,
    radius_mm: float,
    spec: RealisticSpec,
    spacing,
) -> None:
    """Push tissue outward from ``centre_mm`` (mm within the given arrays), in place.

    Output voxel x samples the input at c + (x − c)(1 − s(r)) with
    s(r) = A (1 − (r/L)²)² for r < L and 0 beyond, A = ``spec.mass_effect``,
    L = ``spec.mass_effect_reach`` · radius. The map is monotonic in r for A < 1 (nothing
    folds), smooth, and the identity from distance L on, so only voxels inside that sphere are
    resampled. The image is interpolated linearly, the organ mask by nearest neighbour: the
    organ boundary near the tumor moves outward.
    """
    reach = float(spec.mass_effect_reach * radius_mm)
    axes = [
        np.arange(n, dtype=np.float32) * np.float32(s) - np.float32(c)
        for n, s, c in zip(image.shape, spacing, centre_mm, strict=True)
    ]
    squared = (
        axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    )
    moving = _true_indices(squared < np.float32(reach**2))
    if moving[0].size == 0:
        return
    strength = np.float32(spec.mass_effect)
    keep = (
        np.float32(1.0)
        - strength * (np.float32(1.0) - squared.ravel()[moving[3]] / np.float32(reach**2)) ** 2
    )
    coordinates = np.empty((3, keep.size), dtype=np.float32)
    for axis, (c, s) in enumerate(zip(centre_mm, spacing, strict=True)):
        coordinates[axis] = (np.float32(c) + axes[axis][moving[axis]] * keep) / np.float32(s)
        # Mode "nearest": positions beyond the edge take the edge's value.
        np.clip(coordinates[axis], 0.0, image.shape[axis] - 1.0, out=coordinates[axis])
    warped_organ = _nearest(np.ascontiguousarray(organ), coordinates)
    index = moving[:3]
    image[index] = _linear_at(np.ascontiguousarray(image), coordinates)
    organ[index] = warped_organ


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


def _nearest(volume: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Nearest-neighbour values at ``coordinates`` (3, n) within ``volume``, rounded as
    ``ndimage.map_coordinates(order=0)`` rounds (half up)."""
    index = np.zeros(coordinates.shape[1], dtype=np.intp)
    for axis, n in enumerate(volume.shape):
        index *= n
        # x + 0.5 is exact in float32 for coordinates below 2**22, so this rounds as scipy.
        index += np.floor(coordinates[axis] + np.float32(0.5)).astype(np.intp)
    return np.take(volume.ravel(), index)


def capsule_rim(tumor: np.ndarray, width_mm: float, spacing) -> np.ndarray:
    """Soft weight (0..1) of a rim of ``width_mm`` along the inside of the tumor's edge."""
    core = separable.erode_box(tumor, _box_size(width_mm, spacing))
    rim = tumor & ~core
    return separable.gaussian_filter(rim, [0.5 / s for s in spacing]) * tumor
