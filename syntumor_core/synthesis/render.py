"""Painting drawn parameters into an image: deterministic, no randomness of its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from syntumor_core.synthesis.config import OrganProfile
from syntumor_core.synthesis.effects import VesselDetector, radial_warp, warp_margin
from syntumor_core.synthesis.inputs import row_ordered
from syntumor_core.synthesis.output import OutputCopy
from syntumor_core.synthesis.paint import blur_margin, paint_tumor
from syntumor_core.synthesis.params import SynthesisParams
from syntumor_core.synthesis.placement import OrganGeometry, bounding_box
from syntumor_core.synthesis.sampling import clip_to_volume, placed_shape
from syntumor_core.synthesis.texture import build_texture

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
    """Voxels around a tumor that its blur (and, if on, its mass effect) can change or read."""
    margins = blur_margin(params.blend.blur_sigma_mm, spacing)
    if params.profile == "realistic" and profile.realistic.mass_effect > 0:
        largest = max(float(np.mean(e.semi_axes_mm)) for e in params.ellipsoids)
        reach_mm = profile.realistic.mass_effect_reach * largest
        extra = warp_margin(largest, profile.realistic, spacing)
        margins = [
            max(m, int(np.ceil(reach_mm / s)) + 1 + e)
            for m, s, e in zip(margins, spacing, extra, strict=True)
        ]
    return margins


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


def _apply_mass_effect(region, domain, ellipsoids, profile, work: Box, spacing) -> None:
    """Warp ``region`` in place around each tumor (largest first), only within ``domain``."""
    spec = profile.realistic
    for ellipsoid in sorted(ellipsoids, key=lambda e: -float(np.mean(e.semi_axes_mm))):
        radius = float(np.mean(ellipsoid.semi_axes_mm))
        if radius < spec.mass_effect_min_radius_mm:
            continue
        extra = warp_margin(radius, spec, spacing)
        reach = [
            int(np.ceil(spec.mass_effect_reach * radius / s)) + 1 + e
            for s, e in zip(spacing, extra, strict=True)
        ]
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
        radial_warp(region[local], domain[local], centre_mm, radius, spec, spacing)


def remove_fragments(tumor: np.ndarray, min_voxels: int) -> np.ndarray:
    """``tumor`` without its 26-connected parts of fewer than ``min_voxels`` voxels."""
    inner = bounding_box(tumor)
    if min_voxels <= 1 or inner is None:
        return tumor
    parts, count = ndimage.label(tumor[inner], structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    small = sizes < min_voxels
    small[0] = False
    if not small.any():
        return tumor
    kept = tumor.copy()
    kept[inner] &= ~small[parts]
    return kept


def _render_cluster(image, geometry, placed, members, work: Box, params, profile, texture, vessels):
    """One cluster of tumors, rendered from the input (clusters never overlap).

    Returns ``(box, region, tumor)`` over ``box`` (volume indices): the new image values and
    the tumor; or None when nothing changes. Only voxels of the geometry's domain (the organ
    minus protected voxels) change or become tumor.
    """
    spacing = geometry.spacing
    organ = geometry.domain_in(work)
    tumor = np.zeros(organ.shape, dtype=bool)
    parts = []
    for index in members:
        _, mask, outer = placed[index]
        local = _within(outer, work)
        tumor[local] |= mask
        parts.append((local, mask))
    warped = None
    if vessels is not None:
        tumor &= ~vessels.mask(work)
        if profile.realistic.mass_effect > 0:
            warped = row_ordered(image[work])
            ellipsoids = [placed[i][0] for i in members]
            _apply_mass_effect(warped, organ, ellipsoids, profile, work, spacing)
    tumor &= organ
    tumor = remove_fragments(tumor, params.min_fragment_voxels)
    inner = bounding_box(tumor)
    if inner is None:
        return None if warped is None else (work, warped, tumor)
    paint = _grow(inner, blur_margin(params.blend.blur_sigma_mm, spacing), tumor.shape)
    box = tuple(
        slice(w.start + p.start, w.start + p.stop) for w, p in zip(work, paint, strict=True)
    )
    region = warped[paint] if warped is not None else row_ordered(image[box])
    paint_tumor(
        region,
        organ[paint],
        tumor[paint],
        [_crop_part(local, mask, paint) for local, mask in parts],
        params,
        profile,
        texture,
        box,  # type: ignore[arg-type]
        spacing,
    )
    if warped is not None:
        return work, warped, tumor
    return box, region, tumor[paint]


def _crop_part(box: Box, mask: np.ndarray, within: Box) -> tuple[Box, np.ndarray]:
    """The part of ``mask`` (covering ``box``) inside ``within``, in ``within``'s indices."""
    start = [max(b.start, w.start) for b, w in zip(box, within, strict=True)]
    stop = [max(lo, min(b.stop, w.stop)) for lo, b, w in zip(start, box, within, strict=True)]
    cropped = mask[
        tuple(slice(lo - b.start, hi - b.start) for lo, hi, b in zip(start, stop, box, strict=True))
    ]
    local = tuple(
        slice(lo - w.start, hi - w.start) for lo, hi, w in zip(start, stop, within, strict=True)
    )
    return local, cropped  # type: ignore[return-value]


def _texture_box(clusters, organ_box: Box) -> Box:
    """Where the texture is needed: the clusters' boxes, within the organ's box."""
    union = _union([work for work, _ in clusters])
    return tuple(
        slice(max(u.start, o.start), max(max(u.start, o.start) + 1, min(u.stop, o.stop)))
        for u, o in zip(union, organ_box, strict=True)
    )  # type: ignore[return-value]


def render_synthesis(
    image: np.ndarray,
    geometry: OrganGeometry,
    params: SynthesisParams,
    profile: OrganProfile,
    *,
    vessels: VesselDetector | None = None,
    output: OutputCopy | None = None,
) -> SynthesisResult:
    """Render ``params`` into a copy of ``image``; the same inputs always give the same output.

    Args:
        image: 3-D CT in HU (any real dtype; the result is float32).
        geometry: the organ (mask, box, spacing, axial axis).
        params: drawn by :func:`~syntumor_core.synthesis.sampling.sample_synthesis`.
        profile: the organ profile the parameters were drawn from.
        vessels: the vessel detector of profile ``realistic`` if already fitted (it is a
            deterministic function of image and mask; fitted here when not given).
        output: the copy of ``image`` and the organ mask that becomes the result, if already
            started (:func:`~syntumor_core.synthesis.synthesize` starts it before drawing the
            parameters, so that the copy overlaps the drawing); started here when not given.
    """
    spacing = geometry.spacing
    if output is None:
        output = OutputCopy(image, geometry.mask)
    placed = []
    for ellipsoid in params.ellipsoids:
        shape = placed_shape(ellipsoid, spacing)
        outer, inner = clip_to_volume(shape, image.shape)
        if all(o.stop > o.start for o in outer):
            placed.append((ellipsoid, shape.mask[inner], outer))
    if not placed:
        return SynthesisResult(*output.result(geometry.box, geometry.organ), params, profile, None)
    margins = _margins(params, profile, spacing)
    clusters = _clusters([_grow(outer, margins, image.shape) for _, _, outer in placed])
    texture = None
    if params.blend.kind != "cyst":
        texture = build_texture(
            params.texture,
            _texture_box(clusters, geometry.box),
            spacing,
            cell_mm=profile.texture.cell_mm,
            threshold=profile.texture.threshold,
        )
    if params.profile != "realistic":
        vessels = None
    elif vessels is None:
        vessels = VesselDetector.fit(
            image, geometry.organ, geometry.box, spacing, profile.realistic
        )
    painted = [
        _render_cluster(image, geometry, placed, members, work, params, profile, texture, vessels)
        for work, members in clusters
    ]
    out_image, label = output.result(geometry.box, geometry.organ)
    for box, region, tumor in filter(None, painted):
        out_image[box] = region
        np.copyto(label[box], np.uint8(TUMOR_LABEL), where=tumor)
    changed = _union([work for work, _ in clusters])
    return SynthesisResult(out_image, label, params, profile, changed)
