"""The refined window grid of fast mode: which windows a coarse pass leaves in doubt.

Every other window along each axis runs first (:func:`coarse_window_indices`, about 1/8 of
the grid). The rest of the grid then runs only where those coarse windows left the labels in
doubt: a window runs when its central cube (:data:`~.options.REFINE_CORE` of the window each
side of its centre, 24 voxels of 96) holds a voxel whose top two blended logits differ by less
than the margin (:data:`~.options.REFINE_MARGIN`, 0.5 logit; :func:`windows_in_doubt`).

Every window run is blended as in the full grid, so a voxel in doubt gets every window that
weighs on it but the far ones (their Gaussian weight is under 14 % of the centre's); a voxel
the coarse windows were sure of keeps a blend of fewer windows. A network in doubt everywhere
(random weights) refines the whole grid.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import torch
from scipy import ndimage

from syntumor_core.segmentation.options import REFINE_CORE


def refine_core(roi_size: Sequence[int]) -> tuple[int, int, int]:
    """Half-size in voxels of the central cube of a window that refinement looks at."""
    return tuple(int(r * REFINE_CORE) for r in roi_size)  # type: ignore[return-value]


def coarse_window_indices(slices: list) -> list[int]:
    """Every other window start along each axis (and the last one): about 1/8 of the grid."""
    starts = [sorted({window[axis].start for window in slices}) for axis in range(3)]
    keep = []
    for axis_starts in starts:
        chosen = set(axis_starts[::2]) | {axis_starts[-1]}
        keep.append(chosen)
    return [
        index
        for index, window in enumerate(slices)
        if all(window[axis].start in keep[axis] for axis in range(3))
    ]


def uncertain(logits: torch.Tensor, margin: float) -> np.ndarray:
    """Voxels ``(X, Y, Z)`` where, in any image, the top two logits differ by less than
    ``margin``. One pass a class (no sort): light on memory for a whole CT."""
    first = logits[:, 0].clone()
    second = torch.full_like(first, -math.inf)
    for index in range(1, logits.shape[1]):
        value = logits[:, index]
        second = torch.maximum(second, torch.minimum(first, value))
        first = torch.maximum(first, value)
    return ((first - second) < margin).any(dim=0).cpu().numpy()


def any_within(mask: np.ndarray, reach: Sequence[int]) -> np.ndarray:
    """Voxels with a ``mask`` voxel within ``reach[axis]`` voxels along every axis (a box).

    A box is separable: scipy runs one O(N) 1-D maximum filter an axis."""
    size = [2 * r + 1 for r in reach]
    return ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant").view(bool)


def windows_in_doubt(
    slices: list,
    done: Collection[int],
    blended: torch.Tensor,
    margin: float,
    roi_size: Sequence[int],
) -> list:
    """The windows of ``slices`` not yet ``done`` whose central cube holds a voxel where the
    top two ``blended`` logits ``(N, C, X, Y, Z)`` differ by less than ``margin``."""
    hit = any_within(uncertain(blended, margin), refine_core(roi_size))
    centre = [r // 2 for r in roi_size]
    return [
        window
        for index, window in enumerate(slices)
        if index not in done
        and hit[tuple(s.start + c for s, c in zip(window, centre, strict=True))]
    ]
