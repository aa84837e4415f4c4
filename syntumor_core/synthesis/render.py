"""Painting drawn parameters into an image: deterministic, no randomness of its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from syntumor_core.synthesis.config import OrganProfile
from syntumor_core.synthesis.effects import VesselDetector, capsule_rim, radial_warp
from syntumor_core.synthesis.params import SynthesisParams
from syntumor_core.synthesis.placement import OrganGeometry, bounding_box
from syntumor_core.synthesis.sampling import clip_to_volume, placed_shape
from syntumor_core.synthesis.texture import TextureField, build_texture

ORGAN_LABEL = 1
TUMOR_LABEL = 2
Box = tuple[slice, slice, slice]


@dataclass(frozen=True, eq=False)
class SynthesisResult:
    """The output of one call.

    Attributes:
        image: new image, float32 HU (the input is never modified).
        label: uint8 map: 0 background, 1 organ, 2 tumor.
        params: every drawn number (replay with :func:`render_synthesis`).
        profile: the organ profile used.
        changed_box: the box outside which image and label equal the input (None: no tumor).
    """

    image: np.ndarray
    label: np.ndarray
    params: SynthesisParams
    profile: OrganProfile
    changed_box: Box | None

    @property
    def tumor_mask(self) -> np.ndarray:
        return self.label == TUMOR_LABEL

    @property
    def tumor_voxels(self) -> int:
        if self.changed_box is None:
            return 0
        return int(np.count_nonzero(self.label[self.changed_box] == TUMOR_LABEL))


def _grow(box: Box, margins, shape) -> Box:
    return tuple(
        slice(max(0, b.start - m), min(n, b.stop + m))
        for b, m, n in zip(box, margins, shape, strict=True)
    )  # type: ignore[return-value]


def _union(boxes: list[Box]) -> Box:
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)
    )  # type: ignore[return-value]


def _within(box: Box, work: Box) -> Box:
    return tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, work, strict=True))  # type: ignore[return-value]


def _margins(params: SynthesisParams, profile: OrganProfile, spacing) -> list[int]:
    """Voxels around a tumor that its blur (and, if on, its mass effect) can change."""
    reach_mm = 4.0 * params.blend.blur_sigma_mm
    if params.profile == "realistic" and profile.realistic.mass_effect > 0:
        largest = max(float(np.mean(e.semi_axes_mm)) for e in params.ellipsoids)
        reach_mm = max(reach_mm, profile.realistic.mass_effect_reach * largest)
    return [int(np.ceil(reach_mm / s)) + 1 for s in spacing]


def _overlaps(a: Box, b: Box) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b, strict=True))


def _clusters(boxes: list[Box]) -> list[tuple[Box, list[int]]]:
    """Group boxes that overlap (transitively): each group is rendered on its own box.

    Outside its grown box a tumor changes nothing (the Gaussian is truncated there), so
    rendering separate groups separately gives exactly what one big box would.
    """
    groups: list[tuple[Box, list[int]]] = [(box, [i]) for i, box in enumerate(boxes)]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _overlaps(groups[i][0], groups[j][0]):
                    box = _union([groups[i][0], groups[j][0]])
                    groups[i] = (box, groups[i][1] + groups[j][1])
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def _apply_mass_effect(region, organ, ellipsoids, profile, work: Box, spacing) -> None:
    """Warp ``region`` and ``organ`` in place around each tumor (largest first)."""
    spec = profile.realistic
    for ellipsoid in sorted(ellipsoids, key=lambda e: -float(np.mean(e.semi_axes_mm))):
        radius = float(np.mean(ellipsoid.semi_axes_mm))
        if radius < spec.mass_effect_min_radius_mm:
            continue
        reach = [int(np.ceil(spec.mass_effect_reach * radius / s)) + 1 for s in spacing]
        local = tuple(
            slice(max(0, c - w.start - r), min(n, c - w.start + r + 1))
            for c, w, r, n in zip(ellipsoid.centre, work, reach, region.shape, strict=True)
        )
        centre_mm = np.array(
            [
                (c - w.start - sl.start) * s
                for c, w, sl, s in zip(ellipsoid.centre, work, local, spacing, strict=True)
            ]
        )
        sub_region, sub_organ = region[local], organ[local]
        radial_warp(sub_region, sub_organ, centre_mm, radius, spec, spacing)


def _paint(
    region, organ, tumor, params, profile, texture: TextureField | None, work: Box, spacing
) -> None:
    """Blend the tumor into ``region`` (in place), only where ``organ`` is set.

    Only the tumor's box grown by the blur's reach is touched: outside it the blurred mask is 0.
    """
    blend = params.blend
    inner = bounding_box(tumor)
    if inner is None:
        return
    margin = [int(np.ceil(4.0 * blend.blur_sigma_mm / s)) + 1 for s in spacing]
    paint = _grow(inner, margin, tumor.shape)
    region, organ, tumor = region[paint], organ[paint], tumor[paint]
    soft = ndimage.gaussian_filter(
        tumor.astype(np.float32), [blend.blur_sigma_mm / s for s in spacing]
    )
    weight = soft * organ
    if blend.kind == "cyst":
        # "Noise" is the deviation from the local (1.5 mm) mean: deviations from the tumor's
        # overall mean would carry the tissue's structure (e.g. renal sinus fat) into the cyst.
        level = ndimage.gaussian_filter(region, [1.5 / s for s in spacing])
        fluid = blend.fluid_hu + profile.types[
            params.tumor_type
        ].appearance.fluid_noise_fraction * (region - level)
        region[...] = region * (1.0 - weight) + fluid * weight
        return
    volume_box = tuple(
        slice(w.start + p.start, w.start + p.stop) for w, p in zip(work, paint, strict=True)
    )
    region -= texture.values(volume_box) * weight * np.float32(blend.difference_hu)  # type: ignore[union-attr]
    if params.profile == "realistic" and profile.realistic.capsule_width_mm > 0:
        rim = capsule_rim(tumor, profile.realistic.capsule_width_mm, spacing)
        region += np.float32(profile.realistic.capsule_hu) * rim * organ


def render_synthesis(
    image: np.ndarray,
    geometry: OrganGeometry,
    params: SynthesisParams,
    profile: OrganProfile,
    *,
    vessels: VesselDetector | None = None,
) -> SynthesisResult:
    """Render ``params`` into a copy of ``image``; the same inputs always give the same output.

    Args:
        image: 3-D CT in HU (any real dtype; the result is float32).
        geometry: the organ (mask, box, spacing, axial axis).
        params: drawn by :func:`~syntumor_core.synthesis.sampling.sample_synthesis`.
        profile: the organ profile the parameters were drawn from.
        vessels: the vessel detector of profile ``realistic`` if already fitted (it is a
            deterministic function of image and mask; fitted here when not given).
    """
    spacing = geometry.spacing
    out_image = np.array(image, dtype=np.float32, copy=True)
    label = geometry.mask.view(np.uint8).copy()  # bool is one byte of 0 or 1
    placed = []
    for ellipsoid in params.ellipsoids:
        shape = placed_shape(ellipsoid, spacing)
        outer, inner = clip_to_volume(shape, image.shape)
        if all(o.stop > o.start for o in outer):
            placed.append((ellipsoid, shape.mask[inner], outer))
    if not placed:
        return SynthesisResult(out_image, label, params, profile, None)
    margins = _margins(params, profile, spacing)
    clusters = _clusters([_grow(outer, margins, image.shape) for _, _, outer in placed])
    texture = None
    if params.blend.kind != "cyst":
        texture = build_texture(
            params.texture,
            geometry.box,
            spacing,
            cell_mm=profile.texture.cell_mm,
            threshold=profile.texture.threshold,
        )
    if params.profile != "realistic":
        vessels = None
    elif vessels is None:
        vessels = VesselDetector.fit(image, geometry.mask, geometry.box, spacing, profile.realistic)
    for work, members in clusters:
        region = out_image[work]
        organ = geometry.mask[work].copy()
        tumor = np.zeros(region.shape, dtype=bool)
        for index in members:
            _, mask, outer = placed[index]
            tumor[_within(outer, work)] |= mask
        if vessels is not None:
            tumor &= ~vessels.mask(work)
            if profile.realistic.mass_effect > 0:
                ellipsoids = [placed[i][0] for i in members]
                _apply_mass_effect(region, organ, ellipsoids, profile, work, spacing)
        tumor &= organ
        _paint(region, organ, tumor, params, profile, texture, work, spacing)
        label_region = organ.astype(np.uint8)
        label_region[tumor] = TUMOR_LABEL
        label[work] = label_region
    changed = _union([work for work, _ in clusters])
    return SynthesisResult(out_image, label, params, profile, changed)
