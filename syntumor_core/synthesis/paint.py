"""Blending a cluster of tumors into the image (spec: "Blending"), in place.

Hypodense tumors: image − texture · soft · difference inside the organ, with ``soft`` the tumor
mask blurred by a Gaussian. The blur is linear, so the tumor may be cut into disjoint parts
(each ellipsoid minus those before it) whose blurs add up to the blur of the whole; parts are
grouped so that the boxes blurred and textured are as small as possible, e.g. a tiny tumor far
from a large one in the same cluster does not make one box span both. Sums of float32 blurs
equal the blur of the union to about 1e-7.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from syntumor_core.synthesis import separable
from syntumor_core.synthesis.effects import capsule_rim, enhancing_rim
from syntumor_core.synthesis.placement import bounding_box
from syntumor_core.synthesis.texture import TextureField

Box = tuple[slice, slice, slice]

# The blur of the tumor mask is truncated at 3 sigma: beyond it a Gaussian step has fallen to
# 0.13 %, under 0.2 HU of even the largest drop (145 HU), so the halo (voxels changed by more
# than 1 HU) is the same as with scipy's default of 4 sigma, for a quarter less work.
BLUR_TRUNCATE = 3.0
# A box of its own costs about as much as this many more voxels of a shared box (set-up).
BOX_OVERHEAD_VOXELS = 20_000
# Largest gain of a delivered drop (see _paint_delivered): the blurred mask of a part of a few
# voxels stays far below 1, and lifting it all the way would darken a halo wider than the part.
MAX_GAIN = 3.0


def blur_margin(blur_sigma_mm: float, spacing) -> list[int]:
    """Voxels around a tumor that its blur can reach, per axis."""
    return [int(np.ceil(BLUR_TRUNCATE * blur_sigma_mm / s)) + 1 for s in spacing]


def _grow(box: Box, margins, shape) -> Box:
    return tuple(
        slice(max(0, b.start - m), min(n, b.stop + m))
        for b, m, n in zip(box, margins, shape, strict=True)
    )  # type: ignore[return-value]


def _union(a: Box, b: Box) -> Box:
    return tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True)
    )  # type: ignore[return-value]


def _volume(box: Box) -> int:
    return int(np.prod([s.stop - s.start for s in box]))


def _shift(box: Box, by: Box, sign: int = 1) -> Box:
    return tuple(
        slice(b.start + sign * o.start, b.stop + sign * o.start)
        for b, o in zip(box, by, strict=True)
    )  # type: ignore[return-value]


def _disjoint_parts(tumor: np.ndarray, parts) -> list[tuple[Box, np.ndarray]]:
    """Each part's voxels of ``tumor`` not in an earlier part: (bounding box, mask in it)."""
    covered = np.zeros(tumor.shape, dtype=bool)
    pieces = []
    for box, mask in parts:
        piece = mask & tumor[box]
        piece &= ~covered[box]
        inner = bounding_box(piece)
        if inner is None:
            continue
        covered[box] |= piece
        pieces.append((_shift(inner, box), piece[inner]))
    return pieces


def blur_groups(tumor: np.ndarray, parts, margin) -> list[tuple[Box, Box, np.ndarray]]:
    """Groups of disjoint tumor parts to blur together: (blur box, support, mask).

    ``parts`` are (box, mask) pairs (boxes within ``tumor``) whose union covers ``tumor``. The
    largest parts come first; each part joins the group whose blur box grows least, if that
    costs less than a box of its own. ``support`` is the group's bounding box within its blur
    box, and ``mask`` the group's tumor voxels over the support.
    """
    pieces = _disjoint_parts(tumor, parts)
    pieces.sort(key=lambda piece: -_volume(piece[0]))
    groups: list[tuple[Box, list[tuple[Box, np.ndarray]]]] = []
    for support, mask in pieces:
        alone = _volume(_grow(support, margin, tumor.shape))
        best, best_saving = None, 0
        for index, (group_support, _) in enumerate(groups):
            joined = _union(group_support, support)
            saving = (
                _volume(_grow(group_support, margin, tumor.shape))
                + alone
                + BOX_OVERHEAD_VOXELS
                - _volume(_grow(joined, margin, tumor.shape))
            )
            if saving > best_saving:
                best, best_saving = index, saving
        if best is None:
            groups.append((support, [(support, mask)]))
        else:
            group_support, members = groups[best]
            groups[best] = (_union(group_support, support), [*members, (support, mask)])
    result = []
    for support, members in groups:
        blur_box = _grow(support, margin, tumor.shape)
        mask = np.zeros([s.stop - s.start for s in support], dtype=bool)
        for piece_box, piece in members:
            mask[_shift(piece_box, support, -1)] |= piece
        result.append((blur_box, _shift(support, blur_box, -1), mask))
    return result


def paint_tumor(
    region, organ, tumor, parts, params, profile, texture: TextureField | None, box: Box, spacing
) -> None:
    """Blend the tumor into ``region`` (in place), only where ``organ`` is set.

    ``region``, ``organ`` and ``tumor`` cover ``box`` (volume indices), the tumor's box grown
    by the blur's reach (outside it the blurred mask is 0); ``parts`` are the (box, mask) of
    each ellipsoid within it. ``organ`` is where the image may change: the organ minus
    protected voxels (and tissue the profile excludes).
    """
    blend = params.blend
    sigmas = [blend.blur_sigma_mm / s for s in spacing]
    if blend.kind == "cyst":
        _paint_cyst(region, organ, tumor, params, profile, sigmas, spacing)
        return
    appearance = profile.types[params.tumor_type].appearance
    if params.profile == "realistic" or appearance.delivered:
        realistic = params.profile == "realistic"
        spec = profile.realistic
        _paint_delivered(
            region,
            organ,
            tumor,
            params,
            texture,
            box,
            spacing,
            spec.grain_sigma_mm if realistic else 0.0,
            spec.texture_strength if realistic else 1.0,
        )
        _paint_capsule(region, organ, tumor, params, profile, spacing)
        return
    margin = blur_margin(blend.blur_sigma_mm, spacing)
    for blur_box, support, mask in blur_groups(tumor, parts, margin):
        shape = [s.stop - s.start for s in blur_box]
        offset = [s.start for s in support]
        soft = separable.gaussian_of_part(mask, offset, shape, sigmas, BLUR_TRUNCATE)
        # image − texture · soft · difference, only inside the organ.
        drop = texture.scaled_values(_shift(blur_box, box), blend.difference_hu)  # type: ignore[union-attr]
        drop *= soft
        target = region[blur_box]
        np.subtract(target, drop, out=target, where=organ[blur_box])
    _paint_capsule(region, organ, tumor, params, profile, spacing)


def _paint_capsule(region, organ, tumor, params, profile, spacing) -> None:
    spec = profile.realistic
    if params.profile == "realistic" and spec.capsule_width_mm > 0 and spec.capsule_hu != 0:
        rim = capsule_rim(tumor, spec.capsule_width_mm, spacing)
        region += np.float32(spec.capsule_hu) * rim * organ


def _paint_delivered(
    region,
    organ,
    tumor,
    params,
    texture,
    box: Box,
    spacing,
    grain_sigma_mm: float = 0.0,
    texture_strength: float = 1.0,
) -> None:
    """Hypodense tumors whose mean drop over each tumor's voxels is ``difference_hu``.

    drop = difference · blur(Σ_k g_k · w · 1_k) · texture, with 1_k the k-th 26-connected
    part of the tumor, w = 1 − rim_fraction · rim (the enhancing rim, brightest at the edge)
    and gains g_k chosen so that the mean drop over part k is ``difference`` (fixed-point
    steps: parts interact only through their blurred edges; gains at most ``MAX_GAIN``, which
    only parts of a few voxels reach). The texture enters divided by its level u0. The image
    changes only where ``organ`` is set (the tumor lies within it).
    """
    blend = params.blend
    sigmas = [blend.blur_sigma_mm / s for s in spacing]
    parts, count = ndimage.label(tumor, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return
    weight = tumor.astype(np.float32)
    if blend.rim_fraction > 0 and blend.rim_width_mm > 0:
        weight -= np.float32(blend.rim_fraction) * enhancing_rim(tumor, blend.rim_width_mm, spacing)
    # The texture around its level u0 (mean about 1), so that the gains stay near 1 / soft.
    shade = texture.values(box)
    shade *= np.float32(texture_strength / params.texture.u0)
    shade += np.float32(1.0 - texture_strength)
    index = parts[tumor]
    gains = np.ones(count + 1, dtype=np.float64)
    support = bounding_box(tumor)
    for _ in range(3):
        scaled = weight * gains.astype(np.float32)[parts]
        drop = separable.gaussian_filter(scaled, sigmas, support=support, truncate=BLUR_TRUNCATE)
        drop *= shade
        means = np.bincount(index, weights=drop[tumor], minlength=count + 1)
        means /= np.maximum(np.bincount(index, minlength=count + 1), 1)
        if np.all(np.abs(means[1:] - 1.0) < 1e-3):
            break
        # A part of a few voxels is mostly edge (soft << 1): its gain is capped, or its
        # blurred halo would paint a lesion much larger than its label.
        gains[1:] = np.minimum(gains[1:] / np.maximum(means[1:], 1e-3), MAX_GAIN)
    drop *= np.float32(blend.difference_hu)
    if blend.grain_hu > 0:
        drop -= _grain(tumor, support, blend, grain_sigma_mm, sigmas, spacing)
    np.subtract(region, drop, out=region, where=organ)


def _grain(tumor, support, blend, grain_sigma_mm: float, sigmas, spacing) -> np.ndarray:
    """Zero-mean heterogeneity of standard deviation ``grain_hu`` over the box, weighted by
    the blurred tumor mask (drawn from ``grain_seed``: the same box gives the same grain)."""
    rng = np.random.default_rng(blend.grain_seed)
    grain = rng.standard_normal(tumor.shape, dtype=np.float32)
    if grain_sigma_mm > 0:
        grain = separable.gaussian_filter(grain, [grain_sigma_mm / s for s in spacing])
        grain /= max(float(grain.std()), 1e-6)
    weight = separable.gaussian_filter(tumor, sigmas, support=support, truncate=BLUR_TRUNCATE)
    grain *= weight
    grain *= np.float32(blend.grain_hu)
    return grain


def _paint_cyst(region, organ, tumor, params, profile, sigmas, spacing) -> None:
    """Blend towards fluid density with the blurred mask as weight (sharp, small lesions)."""
    blend = params.blend
    soft = separable.gaussian_filter(
        tumor, sigmas, support=bounding_box(tumor), truncate=BLUR_TRUNCATE
    )
    weight = soft * organ
    # "Noise" is the deviation from the local (1.5 mm) mean: deviations from the tumor's
    # overall mean would carry the tissue's structure (e.g. renal sinus fat) into the cyst.
    level = separable.gaussian_filter(region, [1.5 / s for s in spacing])
    fraction = profile.types[params.tumor_type].appearance.fluid_noise_fraction
    fluid = blend.fluid_hu + fraction * (region - level)
    region[...] = region * (1.0 - weight) + fluid * weight
