"""Shared fixtures: a seeded generator, synthetic liver volumes and a cached phantom.

The synthetic liver is an irregular blob (an ellipsoid with a lobe, its surface bent by a smooth
random field) with parenchyma at 110 ± 15 HU and bright "vessel" tubes (~180 HU) running
through it, on a soft-tissue background. Every array a session fixture hands out is read-only,
so a test (or the code under test) that writes into a shared input fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

LIVER_HU = 110.0
VESSEL_HU = 180.0
BACKGROUND_HU = 40.0
NOISE_HU = 15.0


@dataclass(frozen=True, eq=False)
class LiverCase:
    """A synthetic CT with a liver-like organ.

    Args:
        image: float32 HU volume (read-only).
        mask: boolean organ mask (read-only).
        vessels: boolean mask of the bright tubes inside the organ (read-only).
        spacing: voxel size in mm per axis.
    """

    image: np.ndarray
    mask: np.ndarray
    vessels: np.ndarray
    spacing: tuple[float, float, float]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _axes_mm(shape, spacing) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm, zero at the volume's centre, broadcastable to 3-D."""
    axes = []
    for axis, (n, s) in enumerate(zip(shape, spacing, strict=True)):
        view = [1, 1, 1]
        view[axis] = n
        axes.append(((np.arange(n) - (n - 1) / 2.0) * s).reshape(view))
    return axes


def _smooth_field(shape, spacing, rng: np.random.Generator, sigma_mm: float) -> np.ndarray:
    noise = rng.standard_normal(shape).astype(np.float32)
    field = ndimage.gaussian_filter(noise, [sigma_mm / s for s in spacing], mode="wrap")
    return field / max(float(field.std()), 1e-6)


def _blob_mask(shape, spacing, semi_axes_mm, rng: np.random.Generator) -> np.ndarray:
    """An ellipsoid with a smaller lobe, its boundary bent by a smooth field; one component."""
    x, y, z = _axes_mm(shape, spacing)
    a, b, c = semi_axes_mm
    body = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    lobe = np.sqrt(((x + 0.55 * a) / (0.5 * a)) ** 2 + ((y - 0.35 * b) / (0.55 * b)) ** 2
                   + (z / (0.7 * c)) ** 2)  # fmt: skip
    distance = np.minimum(body, lobe) + 0.08 * _smooth_field(shape, spacing, rng, 12.0)
    mask = distance < 1.0
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return mask


def _tube(shape, spacing, semi_axes_mm, axis: int, offset: float, radius_mm: float) -> np.ndarray:
    """A gently curving tube of ``radius_mm`` along ``axis``, placed at ``offset`` of the organ."""
    coords = _axes_mm(shape, spacing)
    run = coords[axis]
    p, q = (a for a in range(3) if a != axis)
    centre_p = offset * semi_axes_mm[p] + 0.1 * semi_axes_mm[p] * np.sin(run / 25.0)
    centre_q = -0.3 * offset * semi_axes_mm[q] + 0.1 * semi_axes_mm[q] * np.cos(run / 30.0)
    return (coords[p] - centre_p) ** 2 + (coords[q] - centre_q) ** 2 <= radius_mm**2


def make_liver_case(
    shape=(96, 96, 64),
    spacing=(1.5, 1.5, 1.5),
    semi_axes_mm=(55.0, 45.0, 35.0),
    *,
    seed: int = 0,
    vessel_radius_mm: float = 3.0,
) -> LiverCase:
    """Build a synthetic liver case (see the module docstring).

    Args:
        shape: voxels per axis.
        spacing: voxel size in mm per axis.
        semi_axes_mm: semi-axes of the liver's main ellipsoid.
        seed: seed of the organ's shape and of the image noise.
        vessel_radius_mm: radius of the bright tubes; 0 for none.
    """
    rng = np.random.default_rng(seed)
    spacing = tuple(float(s) for s in spacing)
    mask = _blob_mask(shape, spacing, semi_axes_mm, rng)
    vessels = np.zeros(shape, dtype=bool)
    if vessel_radius_mm > 0:
        for axis, offset in ((2, 0.2), (0, -0.25), (1, 0.3)):
            vessels |= _tube(shape, spacing, semi_axes_mm, axis, offset, vessel_radius_mm)
        vessels &= mask
    image = np.full(shape, BACKGROUND_HU, dtype=np.float32)
    image[mask] = LIVER_HU
    image[vessels] = VESSEL_HU
    image += (NOISE_HU * rng.standard_normal(shape)).astype(np.float32)
    return LiverCase(_read_only(image), _read_only(mask), _read_only(vessels), spacing)  # type: ignore[arg-type]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def small_liver() -> LiverCase:
    """96×96×64 voxels at 1.5 mm: room for tiny, small and medium tumors."""
    return make_liver_case()


@pytest.fixture(scope="session")
def big_liver() -> LiverCase:
    """A liver of about 2 litres at 2 mm: room for large (24–40 mm) tumors."""
    return make_liver_case(
        shape=(112, 96, 80), spacing=(2.0, 2.0, 2.0), semi_axes_mm=(95.0, 80.0, 65.0), seed=1
    )


@pytest.fixture(scope="session")
def phantom():
    """The procedural abdominal phantom at 2.5 mm (liver with vessels, pancreas, kidneys)."""
    from syntumor_core.phantom import make_phantom

    built = make_phantom(seed=0, shape=(160, 128, 96), spacing=(2.5, 2.5, 2.5))
    for array in (built.image.array, built.labels.array, built.vessels):
        _read_only(array)
    return built
