"""The random texture that modulates a tumor's intensity drop.

The released method builds a field in [0, 1] in four steps (spec: "Texture"):

1. ``a`` = uniform noise smoothed by a Gaussian of sigma_a;
2. ``a`` rescaled min–max to [base, base + scale];
3. ``b`` = Bernoulli(``a``) per voxel, smoothed by a Gaussian of sigma_b;
4. texture = clip(beta · b, 0, 1) with beta = u0 / mean(b[b > 0.12]).

It precomputed ten 420×300×320 fields at start-up (73 s, 3 GB). SynTumor computes the same
field on demand, over the organ's bounding box (the window the release cropped), on a coarse grid
of cells about ``cell_mm`` wide:

* uniform noise smoothed by sigma_a has a Gaussian-like distribution whose amplitude the min–max
  rescaling removes, so it is drawn per cell and smoothed with sigma_a reduced by the cell's own
  width (sigma'^2 = sigma^2 − cell^2 / 12, the variance of a box of one cell);
* the sum of a cell's independent Bernoulli(a) voxels is Binomial(voxels per cell, a) because
  ``a`` is smooth on the scale of a cell (drawn in its normal approximation: the smoothing
  that follows sums many cells), and a Gaussian of sigma_b equals a one-cell box
  followed by a Gaussian of sigma' as above; so ``b`` is the smoothed binomial cell density;
* ``b`` is read at full resolution by trilinear interpolation, only inside a tumor's box.

The result has the statistics of the original fields (see ``tests/core/test_texture.py``, which
compares it with a direct full-resolution computation) at about 1/1000 of the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from syntumor_core.synthesis.config import TextureSpec

# The organ's box is padded by three sigmas (the spec's minimum margin) before filtering, so
# the filters' edges never reach the organ.
MARGIN_SIGMAS = 3.0


@dataclass(frozen=True)
class TextureParams:
    """The drawn numbers of one texture field (sigmas in mm)."""

    sigma_a_mm: float
    sigma_b_mm: float
    scale: float
    base: float
    u0: float
    seed: int


def sample_texture(spec: TextureSpec, *, rng: np.random.Generator) -> TextureParams:
    """Draw the parameters of one texture field (one per synthesis call, as released)."""
    return TextureParams(
        sigma_a_mm=float(rng.choice(np.asarray(spec.sigma_a_mm, dtype=float))),
        sigma_b_mm=float(rng.choice(np.asarray(spec.sigma_b_mm, dtype=float))),
        scale=float(rng.uniform(*spec.scale)),
        base=float(rng.uniform(*spec.base)),
        u0=float(rng.uniform(*spec.u0)),
        seed=int(rng.integers(0, 2**63 - 1)),
    )


@dataclass(frozen=True, eq=False)
class TextureField:
    """A texture over a box of the volume, stored coarsely; read it with :meth:`values`.

    Attributes:
        density: the smoothed cell density ``b`` on the coarse grid (float32).
        origin: volume index of the first fine voxel of cell (0, 0, 0).
        factors: fine voxels per cell along each axis.
        beta: the normalisation u0 / mean(b[b > threshold]).
    """

    density: np.ndarray
    origin: tuple[int, int, int]
    factors: tuple[int, int, int]
    beta: float

    def values(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """The texture (float32, in [0, 1]) at every voxel of ``box`` (volume indices).

        Trilinear interpolation between cell centres (cell j of ``f`` voxels has its centre at
        fine position j·f + (f − 1)/2), clamped at the field's edges.
        """
        inside, padding = [], []
        for sl, origin, factor, n in zip(
            box, self.origin, self.factors, self.density.shape, strict=True
        ):
            low = min(max(sl.start, origin), origin + n * factor - 1)
            high = max(min(sl.stop, origin + n * factor), low + 1)
            inside.append(slice(low, high))
            padding.append((low - sl.start, sl.stop - high))
        values = self._values_inside(tuple(inside))
        if any(p != (0, 0) for p in padding):
            # Beyond the field, clamp to its edge (the texture there is never weighted much).
            values = np.pad(values, [(max(0, a), max(0, b)) for a, b in padding], mode="edge")
            values = values[
                tuple(
                    slice(max(0, -a), values.shape[i] - max(0, -b))
                    for i, (a, b) in enumerate(padding)
                )
            ]
        # Step 4 of the spec: texture = clip(beta · b, 0, 1).
        values *= np.float32(self.beta)
        return np.clip(values, 0.0, 1.0, out=values)

    def _values_inside(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        field = self.density
        # Interpolate one axis at a time, the last axis first, so that only the final pass
        # (along axis 0, which copies contiguous slabs) works at full size.
        for axis in (2, 1, 0):
            sl, origin, factor = box[axis], self.origin[axis], self.factors[axis]
            size = field.shape[axis]
            fine = np.arange(sl.start, sl.stop, dtype=np.float64)
            position = np.clip((fine - origin - (factor - 1) / 2.0) / factor, 0.0, size - 1.0)
            lower = np.minimum(np.floor(position).astype(np.int64), size - 1)
            upper = np.minimum(lower + 1, size - 1)
            shape = [1, 1, 1]
            shape[axis] = -1
            weight = (position - lower).astype(np.float32).reshape(shape)
            low_values = np.take(field, lower, axis=axis)
            low_values += (np.take(field, upper, axis=axis) - low_values) * weight
            field = low_values
        return field


def _reduced_sigma(sigma_mm: float, cell_mm: np.ndarray) -> np.ndarray:
    """Gaussian sigma, in cells, that a one-cell box needs to add up to ``sigma_mm``."""
    variance = np.maximum(sigma_mm**2 - cell_mm**2 / 12.0, (0.25 * cell_mm) ** 2)
    return np.sqrt(variance) / cell_mm


def build_texture(
    params: TextureParams,
    box: tuple[slice, slice, slice],
    spacing: tuple[float, float, float],
    *,
    cell_mm: float = 4.0,
    threshold: float = 0.12,
) -> TextureField:
    """Generate the texture over ``box`` (volume indices), with a margin for the filters.

    Args:
        params: drawn parameters (see :func:`sample_texture`).
        box: the region to cover, usually the organ's bounding box.
        spacing: voxel size in mm.
        cell_mm: target width of a coarse cell; the fine-scale structure below the smaller sigma
            is what a cell averages away, so keep it at or below min(sigma_b).
        threshold: the 0.12 of beta = u0 / mean(b[b > 0.12]).
    """
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    factors = np.maximum(1, np.round(cell_mm / spacing_mm)).astype(np.int64)
    cell = factors * spacing_mm
    margin_cells = np.ceil(MARGIN_SIGMAS * max(params.sigma_a_mm, params.sigma_b_mm) / cell).astype(
        np.int64
    )
    extent = np.array([s.stop - s.start for s in box])
    cells = -(-extent // factors) + 2 * margin_cells
    origin = tuple(int(s.start - m * f) for s, m, f in zip(box, margin_cells, factors, strict=True))

    rng = np.random.default_rng(params.seed)
    smooth_noise = ndimage.gaussian_filter(
        rng.random(tuple(cells), dtype=np.float32),
        _reduced_sigma(params.sigma_a_mm, cell),
        mode="reflect",
    )
    low, high = float(smooth_noise.min()), float(smooth_noise.max())
    probability = params.base + params.scale * (smooth_noise - low) / max(high - low, 1e-12)
    # Binomial(n, p) / n for the n voxels of a cell, drawn in its normal approximation: the
    # Gaussian that follows sums many cells, so only the mean and variance matter.
    voxels_per_cell = float(np.prod(factors))
    spread = np.sqrt(probability * (1.0 - probability) / voxels_per_cell)
    cell_density = probability + spread * rng.standard_normal(probability.shape, dtype=np.float32)
    density = ndimage.gaussian_filter(
        cell_density,
        _reduced_sigma(params.sigma_b_mm, cell),
        mode="reflect",
    )
    above = density[density > threshold]
    reference = float(above.mean()) if above.size else float(density.mean())
    beta = params.u0 / max(reference, 1e-6)
    return TextureField(density, origin, tuple(int(f) for f in factors), beta)  # type: ignore[arg-type]
