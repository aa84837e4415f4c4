"""The random texture that modulates a tumor's intensity drop.

The released method builds a field in [0, 1] in four steps (spec: "Texture"):

1. ``a`` = uniform noise smoothed by a Gaussian of sigma_a;
2. ``a`` rescaled min–max to [base, base + scale];
3. ``b`` = Bernoulli(``a``) per voxel, smoothed by a Gaussian of sigma_b;
4. texture = clip(beta · b, 0, 1) with beta = u0 / mean(b[b > 0.12]).

It precomputed ten 420×300×320 fields at start-up (73 s, 3 GB). SynTumor computes the same
field on demand, over the box the tumors need (plus three sigmas for the filters), on coarse
grids:

* ``b`` lives on cells about ``cell_mm`` wide. The sum of a cell's independent Bernoulli(a)
  voxels is Binomial(voxels per cell, a) because ``a`` is smooth on the scale of a cell; the
  Gaussian that follows sums many cells, so only its mean and variance matter and it is drawn
  as ``a`` plus uniform noise of the binomial's variance. A Gaussian of sigma_b equals a
  one-cell box followed by a Gaussian of sigma' (sigma'^2 = sigma^2 − cell^2 / 12, the
  variance of a box of one cell), so ``b`` is the binomial cell density smoothed by sigma';
* ``a`` lives on cells an integer number of ``b`` cells wide, about sigma_a / 2 (the same
  cells as ``b`` for sigma_a up to 12 mm at 4 mm cells): uniform noise smoothed by sigma_a has
  a Gaussian-like distribution whose amplitude the min–max rescaling removes, so it is drawn
  per cell, smoothed with the reduced sigma', rescaled, and interpolated linearly onto the
  ``b`` cells (it varies little over a cell);
* the field is read at full resolution by trilinear interpolation, only inside a tumor's box.

The filters are matrix products (:mod:`syntumor_core.synthesis.separable`). The result has the
statistics of the original fields (see ``tests/core/test_texture.py``, which compares it with a
direct full-resolution computation) at about 1/1000 of the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from syntumor_core.synthesis.config import TextureSpec
from syntumor_core.synthesis.separable import (
    apply_separable,
    gaussian_filter,
    interpolation_matrix,
)

# The box a field covers is padded by three sigmas (the spec's minimum margin) before each
# filter: sigma_b for ``b``, and ``a`` reaches 3 · max(sigma_a, sigma_b) beyond the box, so the
# filters' edges never reach it.
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
        fine position j·f + (f − 1)/2) of clip(beta · b, 0, 1), clamped at the field's edges.
        """
        values = self.scaled_values(box, 1.0)
        # Interpolation weights are rounded to float32, so guard the upper bound.
        return np.clip(values, 0.0, 1.0, out=values)

    def scaled_values(self, box: tuple[slice, slice, slice], scale: float) -> np.ndarray:
        """``scale`` · texture over ``box``, as :meth:`values` but without its final clip.

        The scale is applied on the coarse grid, which saves a pass over the fine box; values
        may exceed ``scale`` by a float32 rounding (about 1e-7 relative).
        """
        matrices, cells = [], []
        for sl, origin, factor, n in zip(
            box, self.origin, self.factors, self.density.shape, strict=True
        ):
            fine = np.arange(sl.start, sl.stop, dtype=np.float64)
            matrix, used = interpolation_matrix((fine - origin - (factor - 1) / 2.0) / factor, n)
            matrices.append(matrix)
            cells.append(used)
        # Step 4 of the spec, texture = clip(beta · b, 0, 1), on the cells it needs.
        coarse = self.density[tuple(cells)] * np.float32(self.beta)
        np.clip(coarse, 0.0, 1.0, out=coarse)
        coarse *= np.float32(scale)
        return apply_separable(coarse, matrices)


def _reduced_sigma(sigma_mm: float, cell_mm: np.ndarray) -> np.ndarray:
    """Gaussian sigma, in cells, that a one-cell box needs to add up to ``sigma_mm``."""
    variance = np.maximum(sigma_mm**2 - cell_mm**2 / 12.0, (0.25 * cell_mm) ** 2)
    return np.sqrt(variance) / cell_mm


def _probability(
    params: TextureParams,
    cells: np.ndarray,
    cell_mm: np.ndarray,
    margin_mm: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Steps 1–2 (``a`` rescaled to [base, base + scale]) at the centres of the ``b`` cells.

    ``a`` is drawn on cells of ``k`` ``b`` cells (k ≈ sigma_a / (2 · cell), at least 1) over
    the ``b`` grid plus enough cells that its whole margin beyond the box reaches
    ``MARGIN_SIGMAS`` · max(sigma) (``margin_mm`` is the ``b`` grid's own margin).
    """
    merge = np.maximum(1, np.round(params.sigma_a_mm / (2.0 * cell_mm) - 0.25)).astype(np.int64)
    coarse_mm = merge * cell_mm
    needed_mm = MARGIN_SIGMAS * max(params.sigma_a_mm, params.sigma_b_mm) - margin_mm
    extra = np.ceil(np.maximum(needed_mm, 0.0) / coarse_mm).astype(np.int64)
    coarse_cells = -(-cells // merge) + 2 * extra
    smooth = gaussian_filter(
        rng.random(tuple(coarse_cells), dtype=np.float32),
        _reduced_sigma(params.sigma_a_mm, coarse_mm),
    )
    low, high = float(smooth.min()), float(smooth.max())
    smooth -= np.float32(low)
    smooth *= np.float32(params.scale / max(high - low, 1e-12))
    smooth += np.float32(params.base)
    if not (merge > 1).any():
        return smooth[tuple(slice(int(e), int(e + n)) for e, n in zip(extra, cells, strict=True))]
    matrices = []
    for n, k, e, total in zip(cells, merge, extra, coarse_cells, strict=True):
        # b cell j sits at a-cell coordinate e + (j − (k − 1) / 2) / k.
        position = e + (np.arange(n) - (k - 1) / 2.0) / k
        matrix, used = interpolation_matrix(position, int(total))
        full = np.zeros((int(n), int(total)), dtype=np.float32)
        full[:, used] = matrix
        matrices.append(full)
    return apply_separable(smooth, matrices)


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
        box: the region to cover: the tumors' boxes (grown by their blur) within the organ's.
        spacing: voxel size in mm.
        cell_mm: target width of a coarse cell; the fine-scale structure below the smaller sigma
            is what a cell averages away, so keep it at or below min(sigma_b).
        threshold: the 0.12 of beta = u0 / mean(b[b > 0.12]).
    """
    spacing_mm = np.asarray(spacing, dtype=np.float64)
    factors = np.maximum(1, np.round(cell_mm / spacing_mm)).astype(np.int64)
    cell = factors * spacing_mm
    margin_cells = np.ceil(MARGIN_SIGMAS * params.sigma_b_mm / cell).astype(np.int64)
    extent = np.array([s.stop - s.start for s in box])
    cells = -(-extent // factors) + 2 * margin_cells
    origin = tuple(int(s.start - m * f) for s, m, f in zip(box, margin_cells, factors, strict=True))

    rng = np.random.default_rng(params.seed)
    probability = _probability(params, cells, cell, margin_cells * cell, rng)
    # Binomial(n, p) / n for the n voxels of a cell: the Gaussian that follows sums many cells,
    # so only mean and variance matter; uniform noise of that variance is the cheapest draw.
    voxels_per_cell = float(np.prod(factors))
    spread = probability * (np.float32(1.0) - probability)
    spread *= np.float32(12.0 / voxels_per_cell)
    np.sqrt(spread, out=spread)
    noise = rng.random(probability.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= spread
    noise += probability
    density = gaussian_filter(noise, _reduced_sigma(params.sigma_b_mm, cell))
    above = density[density > threshold]
    reference = float(above.mean()) if above.size else float(density.mean())
    beta = params.u0 / max(reference, 1e-6)
    return TextureField(density, origin, tuple(int(f) for f in factors), beta)  # type: ignore[arg-type]
