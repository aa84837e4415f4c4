"""A small constructed case with "real" lesions for the realism harness, CLI and page tests."""

from __future__ import annotations

import numpy as np

from syntumor_core.realism.score import RealCase
from tests.conftest import make_liver_case

LESION_HU = 70.0
LESION_CENTRES_MM = ((-20.0, -10.0, 0.0), (15.0, 12.0, -5.0), (0.0, -20.0, 10.0), (25.0, -8.0, 8.0))


def make_lesion_case(seed: int = 0) -> RealCase:
    """The conftest liver (96×96×64 at 1.5 mm) with four dark round lesions labelled 2."""
    liver = make_liver_case(seed=seed, vessel_radius_mm=0.0)
    image = np.array(liver.image)
    label = liver.mask.astype(np.uint8)
    grid = [
        (np.arange(n) - (n - 1) / 2.0)[(slice(None),) + (None,) * (2 - axis)] * liver.spacing[axis]
        for axis, n in enumerate(image.shape)
    ]
    rng = np.random.default_rng(seed)
    for centre in LESION_CENTRES_MM:
        radius = rng.uniform(6.0, 10.0)
        ball = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2
        ball &= liver.mask
        label[ball] = 2
        image[ball] = LESION_HU + 15.0 * rng.standard_normal(int(ball.sum()))
    return RealCase(image=image, label=label, spacing=liver.spacing, name="constructed")
