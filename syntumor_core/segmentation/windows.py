"""Sliding windows and their Gaussian blending, as MONAI does them, and fast mode's runner.

:func:`window_slices` is the grid MONAI's ``sliding_window_inference`` visits and
:class:`Blend` its blending arithmetic (a Gaussian importance map, sigma
:data:`~.options.SIGMA_SCALE` of the window). :func:`fast_logits` runs that grid cheaper:
several windows a forward pass, one pass shared by all windows whose input is constant (all
air, say: their outputs are identical), and, with a refinement margin, the refined grid of
:mod:`syntumor_core.segmentation.refine`. The network is anything that follows
:class:`WindowNetwork` (the predictor's eager or compiled network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from torch import nn

from syntumor_core.segmentation.options import SIGMA_SCALE
from syntumor_core.segmentation.refine import coarse_window_indices, windows_in_doubt

ProgressCallback = Callable[[float], None]


class WindowNetwork(Protocol):
    """What :func:`fast_logits` runs windows through."""

    def prepare(self, passes: int) -> bool:
        """Get ready for a run of ``passes`` forward passes; whether it may run compiled."""
        ...

    def __call__(self, windows: torch.Tensor, compiled: bool) -> torch.Tensor:
        """Float32 logits ``(B, C, *window)`` of a batch of windows ``(B, 1, *window)``."""
        ...


def window_slices(image_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> list:
    """The windows MONAI's ``sliding_window_inference`` visits, in its order.

    Args:
        image_size: spatial size of the (already padded) image, each >= the window.
        roi_size: window size per axis.
        overlap: fraction of a window shared with the next one, in [0, 1).

    Returns:
        A list of ``(slice, slice, slice)``, one per window.
    """
    intervals = [
        roi if roi == size else max(int(roi * (1 - overlap)), 1)
        for size, roi in zip(image_size, roi_size, strict=True)
    ]
    return dense_patch_slices(tuple(image_size), tuple(roi_size), intervals)


class Blend:
    """Gaussian-weighted sum of window logits and of the weights, as MONAI blends windows."""

    def __init__(self, shape, roi_size, device, sigma_scale: float = SIGMA_SCALE) -> None:
        self.weight = compute_importance_map(
            roi_size, mode="gaussian", sigma_scale=sigma_scale, device=device
        ).to(torch.float32)[None]
        self.shape = tuple(shape)
        self.device = device
        self.outputs: torch.Tensor | None = None
        self.count = torch.zeros((1, 1, *shape[2:]), device=device)
        self._counted: set = set()

    def add(self, region: tuple, logits: torch.Tensor) -> None:
        if self.outputs is None:
            self.outputs = torch.zeros((self.shape[0], logits.shape[0], *self.shape[2:]),
                                       device=self.device)  # fmt: skip
        self.outputs[region] += logits * self.weight
        spatial = tuple((s.start, s.stop) for s in region[2:])
        if spatial not in self._counted:  # the weight counts once per window, not per image
            self._counted.add(spatial)
            self.count[(slice(None), slice(None), *region[2:])] += self.weight[None]

    def result(self) -> torch.Tensor:
        return self.outputs / self.count


def fast_logits(
    batch: torch.Tensor,
    network: WindowNetwork,
    *,
    roi_size: Sequence[int],
    overlap: float,
    sw_batch_size: int,
    refine_margin: float | None,
    report: ProgressCallback,
) -> torch.Tensor:
    """Fast mode's logits ``(N, C, X, Y, Z)`` of a preprocessed batch ``(N, 1, X, Y, Z)``.

    The window grid and blending are MONAI's; ``refine_margin=None`` runs the whole grid,
    a margin the refined grid (:mod:`syntumor_core.segmentation.refine`).
    """
    size = batch.shape[2:]
    before = [max(r - n, 0) // 2 for n, r in zip(size, roi_size, strict=True)]
    after = [max(r - n, 0) - b for n, r, b in zip(size, roi_size, before, strict=True)]
    pad = [width for axis in (2, 1, 0) for width in (before[axis], after[axis])]
    padded = nn.functional.pad(batch, pad) if any(pad) else batch  # symmetric, as MONAI
    slices = window_slices(padded.shape[2:], roi_size, overlap)
    crop = (slice(None), slice(None), *(slice(b, b + n) for b, n in zip(before, size, strict=True)))
    blend = Blend(padded.shape, roi_size, padded.device)
    # whether to compile depends on the volume (its whole grid), not on how much of the
    # grid the refinement ends up running: the coarse pass alone may be under the threshold
    network.prepare(math.ceil(len(slices) * padded.shape[0] / sw_batch_size))
    run = WindowRun(padded, network, sw_batch_size, [blend])
    if refine_margin is None:
        run.windows(slices, report)
        return blend.result()[crop]
    # 1. every other window along each axis: coarse logits everywhere
    coarse = coarse_window_indices(slices)
    run.windows([slices[i] for i in coarse], lambda f: report(0.3 * f))
    # 2. the rest of the grid only where a window's core holds an uncertain voxel
    fine = windows_in_doubt(slices, set(coarse), blend.result(), refine_margin, roi_size)
    run.windows(fine, lambda f: report(0.3 + 0.7 * f))
    # Every window run is blended as in the full grid: where all windows covering a voxel
    # ran, its logits are the full grid's; elsewhere a weighted mean of fewer windows.
    return blend.result()[crop]


class WindowRun:
    """Windows of one padded batch run through a network and added to blends (one usually;
    several blend the same logits with different weights, e.g. Gaussian sigmas).

    Windows whose input is constant (all air, say) share one forward pass per value, also
    across calls of :meth:`windows` (the coarse and the fine pass).
    """

    def __init__(
        self, padded: torch.Tensor, network: WindowNetwork, batch_size: int, blends: Sequence[Blend]
    ) -> None:
        self.padded, self.network, self.batch_size = padded, network, batch_size
        self.blends = list(blends)
        self.constant: dict[float, torch.Tensor] = {}  # input value -> logits

    def windows(self, windows: list, report: ProgressCallback) -> None:
        """Run ``windows`` (spatial slices) over each image and add their logits."""
        jobs = []
        for window in windows:
            for image_index in range(self.padded.shape[0]):
                region = (slice(image_index, image_index + 1), slice(None), *window)
                low, high = self.padded[region].aminmax()
                jobs.append((region, float(low) if low == high else None))
        runs = [job for job in jobs if job[1] is None]
        firsts = {}
        for job in jobs:
            if job[1] is not None and job[1] not in firsts and job[1] not in self.constant:
                firsts[job[1]] = job
        runs.extend(firsts.values())
        compiled = self.network.prepare(math.ceil(len(runs) / self.batch_size))
        for start in range(0, len(runs), self.batch_size):
            chunk = runs[start : start + self.batch_size]
            logits = self.network(torch.cat([self.padded[region] for region, _ in chunk]), compiled)
            for (region, value), window_logits in zip(chunk, logits, strict=True):
                if value is None:
                    for blend in self.blends:
                        blend.add(region, window_logits)
                else:
                    self.constant[value] = window_logits
            report(min(start + self.batch_size, len(runs)) / len(runs))
        if not runs:
            report(1.0)
        for region, value in jobs:
            if value is not None:
                for blend in self.blends:
                    blend.add(region, self.constant[value])
