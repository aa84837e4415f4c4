"""The lesion table of a segmentation: one row per tumor component.

Each component (26-connected) of the tumor label gets its voxel count, volume in ml, longest
axial diameter in mm (the largest corner-to-corner distance of its pixels within one axial
slice), centroid in voxels and in world millimetres, and mean HU (:func:`lesion_table`).

Example:
    >>> rows = lesion_table(result.labels.array, ct.array, ct.affine)  # doctest: +SKIP
    >>> rows[0].volume_ml  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from syntumor_core.errors import MaskError, VolumeError
from syntumor_core.segmentation.options import TUMOR_LABEL
from syntumor_core.segmentation.postprocess import check_label_map
from syntumor_core.volume import Volume


@dataclass(frozen=True)
class LesionRow:
    """One connected tumor component (26-connected) of a segmentation.

    Args:
        index: rank by size, 1 = the largest.
        voxels: voxel count.
        volume_ml: voxels × voxel volume, in millilitres.
        longest_axial_diameter_mm: the largest extent within one axial slice (the longest
            distance between corners of the component's pixels in that slice), over all slices.
        centroid_voxel: centre of mass in array index coordinates.
        centroid_mm: the same point in world (RAS+) millimetres.
        mean_hu: mean of the CT over the component, in HU.
    """

    index: int
    voxels: int
    volume_ml: float
    longest_axial_diameter_mm: float
    centroid_voxel: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    mean_hu: float


_SMALL_GROUP_POINTS = 64  # up to this many corner points per slice: all pairs; more: hull first


def _corner_points(rows: np.ndarray, columns: np.ndarray, group_of: np.ndarray) -> tuple:
    """The outer corners of the first and last pixel of every pixel row of every group.

    Pixels are sorted by (group, row, column). A pixel that is neither first nor last in its
    row lies between them, so its corners are never the end of a longest corner-to-corner
    segment; each row contributes the two left corners of its first pixel and the two right
    corners of its last. Returns (points (M, 2), group of each point), sorted by group.
    """
    new_run = np.ones(len(rows), dtype=bool)
    new_run[1:] = (rows[1:] != rows[:-1]) | (group_of[1:] != group_of[:-1])
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], len(rows)) - 1
    points = []
    for ends, side in ((first, -0.5), (last, 0.5)):
        for row_side in (-0.5, 0.5):
            points.append(np.stack([rows[ends] + row_side, columns[ends] + side], axis=1))
    order = np.argsort(np.tile(group_of[first], 4), kind="stable")
    return np.concatenate(points)[order], np.tile(group_of[first], 4)[order]


def _farthest_pair(points: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """Per group of ``points`` ``(G, P, 2)``, the longest distance under ``metric`` (mm²)."""
    rows, columns = points[..., 0], points[..., 1]
    row_gaps = rows[:, :, None] - rows[:, None, :]
    column_gaps = columns[:, :, None] - columns[:, None, :]
    squared = metric[0, 0] * row_gaps**2 + metric[1, 1] * column_gaps**2
    if metric[0, 1] != 0:  # oblique in-plane axes
        squared += 2 * metric[0, 1] * row_gaps * column_gaps
    return np.sqrt(squared.reshape(len(points), -1).max(axis=1))


def _axial_diameters(
    labels_of: np.ndarray, voxels: np.ndarray, count: int, axial_axis: int, matrix: np.ndarray
) -> np.ndarray:
    """Longest axial diameter (mm) of every component: the largest distance between corners
    of its pixels within one slice along ``axial_axis``. Index 0 is unused."""
    row_axis, column_axis = (axis for axis in range(3) if axis != axial_axis)
    to_mm = matrix[:, [row_axis, column_axis]]
    metric = to_mm.T @ to_mm  # squared mm of an in-plane index step
    rows, columns = voxels[:, row_axis], voxels[:, column_axis]
    order = np.lexsort((columns, rows, voxels[:, axial_axis], labels_of))
    keys = np.stack([labels_of[order], voxels[order, axial_axis]], axis=1)
    group_of = np.cumsum(np.any(np.diff(keys, axis=0, prepend=-1), axis=1)) - 1
    group_label = keys[np.flatnonzero(np.diff(group_of, prepend=-1)), 0]
    points, point_group = _corner_points(rows[order].astype(float), columns[order], group_of)
    starts = np.searchsorted(point_group, np.arange(len(group_label)))
    sizes = np.diff(np.append(starts, len(points)))
    diameters = np.zeros(count + 1)
    bounds = (0, 4, 8, 16, 32, _SMALL_GROUP_POINTS)
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        chosen = np.flatnonzero((sizes > low) & (sizes <= high))
        per_chunk = max(1, 2**18 // high**2)  # bounds the (G, P, P, 2) gaps to ~4 MB
        for first in range(0, len(chosen), per_chunk):
            chunk = chosen[first : first + per_chunk]
            # pad every group to `high` points by repeating its first (repeats change no max)
            within = np.minimum(np.arange(high)[None, :], sizes[chunk, None] - 1)
            lengths = _farthest_pair(points[starts[chunk, None] + within], metric)
            np.maximum.at(diameters, group_label[chunk], lengths)
    for group in np.flatnonzero(sizes > _SMALL_GROUP_POINTS):
        corners = points[starts[group] : starts[group] + sizes[group]]
        hull = corners[ConvexHull(corners).vertices]  # affine maps keep the hull
        length = float(_farthest_pair(hull[None], metric)[0])
        diameters[group_label[group]] = max(diameters[group_label[group]], length)
    return diameters


def lesion_table(
    labels: np.ndarray, image: np.ndarray, affine: np.ndarray
) -> tuple[LesionRow, ...]:
    """Describe every tumor component (label 2, 26-connected) of a segmentation.

    Args:
        labels: label map (0, 1 liver, 2 tumor), 3-D.
        image: the CT in HU on the same grid.
        affine: the 4×4 voxel-to-world (RAS+ mm) matrix of that grid; the axial axis is the
            array axis closest to superior–inferior.

    Returns:
        One :class:`LesionRow` per component, largest first (ties: first in array order).
    """
    array = check_label_map(labels)
    image = np.asarray(image)
    if image.shape != array.shape:
        raise MaskError(f"image shape {image.shape} does not match labels shape {array.shape}")
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise VolumeError(f"affine must be a finite 4×4 matrix, got shape {matrix.shape}")
    components, count = ndimage.label(array == TUMOR_LABEL, structure=np.ones((3, 3, 3)))
    if count == 0:
        return ()
    voxels = np.argwhere(components)
    labels_of = components[tuple(voxels.T)]
    sizes = np.bincount(labels_of, minlength=count + 1)
    centroids = (
        np.stack(
            [
                np.bincount(labels_of, weights=voxels[:, axis], minlength=count + 1)
                for axis in range(3)
            ],
            axis=1,
        )
        / np.maximum(sizes, 1)[:, None]
    )
    hu_sums = np.bincount(labels_of, weights=image[tuple(voxels.T)].astype(np.float64),
                          minlength=count + 1)  # fmt: skip
    diameters = _axial_diameters(
        labels_of, voxels, count, Volume(array, matrix).axial_axis, matrix[:3, :3]
    )
    world = centroids @ matrix[:3, :3].T + matrix[:3, 3]
    voxel_ml = abs(float(np.linalg.det(matrix[:3, :3]))) / 1000.0
    order = sorted(range(1, count + 1), key=lambda label: (-sizes[label], label))
    return tuple(
        LesionRow(
            index=rank,
            voxels=int(sizes[label]),
            volume_ml=int(sizes[label]) * voxel_ml,
            longest_axial_diameter_mm=float(diameters[label]),
            centroid_voxel=tuple(float(c) for c in centroids[label]),  # type: ignore[arg-type]
            centroid_mm=tuple(float(c) for c in world[label]),  # type: ignore[arg-type]
            mean_hu=float(hu_sums[label] / sizes[label]),
        )
        for rank, label in enumerate(order, start=1)
    )
