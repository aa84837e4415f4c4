"""The entry point: :func:`make_phantom` draws the anatomy and paints it, part by part."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from syntumor_core.errors import ParameterError
from syntumor_core.phantom.anatomy import sample_body, sample_layout, sample_liver
from syntumor_core.phantom.body import (
    paint_back_muscles,
    paint_heart,
    paint_layers,
    paint_lung_vessels,
    paint_ribs,
    paint_spine,
)
from syntumor_core.phantom.canvas import LABELS, Canvas
from syntumor_core.phantom.geometry import Grid, SmoothField
from syntumor_core.phantom.intensities import blur_and_noise
from syntumor_core.phantom.organs import (
    paint_bowel,
    paint_great_vessels,
    paint_liver,
    paint_liver_vessels,
    paint_solid_organs,
)
from syntumor_core.phantom.vessels import liver_trees
from syntumor_core.volume import Volume

logger = logging.getLogger(__name__)

_MIN_SHAPE = 16
_MAX_SHAPE = 2048
_SPACING_RANGE_MM = (0.2, 10.0)


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
    body = sample_body(body_rng)
    liver = sample_liver(liver_rng)
    layout = sample_layout(layout_rng, body)
    lo, hi = (-300.0, -300.0, -300.0), (300.0, 300.0, 300.0)
    fields = {
        name: SmoothField(field_rng, lo, hi, step)
        for name, step in (("bump", 28.0), ("coarse", 14.0), ("fine", 5.0))
    }
    trees = liver_trees(tree_rng, body, liver, layout, fields["bump"])
    canvas = Canvas(Grid(shape, spacing), fields)
    paint_layers(canvas, body)
    paint_back_muscles(canvas, body)
    report(0.2)
    paint_bowel(canvas, body, layout)
    paint_liver(canvas, body, liver, layout)
    paint_solid_organs(canvas, body, layout)
    report(0.4)
    paint_great_vessels(canvas, body, layout)
    vessels, vessel_box = paint_liver_vessels(canvas, trees)
    paint_heart(canvas, body, layout)
    paint_lung_vessels(canvas, body, layout["lung_vessels"])
    paint_spine(canvas, body)
    paint_ribs(canvas, body, layout["ribs"])
    if vessel_box is not None:  # what was painted later is no longer liver
        vessels[vessel_box] &= canvas.labels[vessel_box] == LABELS["liver"]
    report(0.6)
    image = blur_and_noise(canvas.image, noise_rng, noise_sd)
    report(1.0)
    affine = canvas.grid.affine
    logger.debug("phantom seed %d shape %s spacing %s built", seed, shape, spacing)
    return Phantom(
        Volume(image, affine.copy()), Volume(canvas.labels, affine.copy()), vessels, seed
    )
