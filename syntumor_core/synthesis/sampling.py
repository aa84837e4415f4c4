"""Drawing the parameters of a synthesis call (all randomness lives here)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy import ndimage

from syntumor_core.errors import MaskError, OrganTooSmallError
from syntumor_core.synthesis.config import LesionGroup, OrganProfile, TumorType
from syntumor_core.synthesis.effects import VesselDetector
from syntumor_core.synthesis.params import BlendParams, EllipsoidParams, SynthesisParams
from syntumor_core.synthesis.placement import OrganGeometry, sample_centre
from syntumor_core.synthesis.shape import Shape, grid_shape, rasterize_ellipsoid, tumor_shape
from syntumor_core.synthesis.texture import sample_texture

logger = logging.getLogger(__name__)


def check_room(geometry: OrganGeometry | None, tumor: TumorType, organ: str) -> OrganGeometry:
    if geometry is None:
        raise MaskError("organ mask is empty: it has no voxel to put a tumor in")
    smallest = tumor.smallest_semi_axis_mm
    needed = 4.0 / 3.0 * np.pi * smallest**3
    if geometry.volume_mm3 < needed:
        raise OrganTooSmallError(
            f"organ too small for tumor type {tumor.name!r}: the {organ} mask holds "
            f"{geometry.volume_mm3 / 1000:.2f} ml, less than the smallest such tumor "
            f"({needed / 1000:.2f} ml, semi-axes {smallest} mm)"
        )
    return geometry


def _draw_ellipsoid(
    group: LesionGroup, geometry, profile, rng, what: str, *, centre=None, radius_mm=None
) -> EllipsoidParams:
    """One ellipsoid of ``group``: drawn semi-axes (or all ``radius_mm``), a drawn centre (or
    the given ``centre``, checked by :func:`check_centre`) and drawn deformations."""
    low, high = group.semi_axis_range_mm
    semi_axes = tuple(
        int(v) for v in rng.integers(max(1, low), max(1, high), size=3, endpoint=True)
    )
    if radius_mm is not None:
        semi_axes = (max(1, round(radius_mm)),) * 3
    sigma = group.sigma.draw(rng)
    requested = None
    if centre is None:
        centre = sample_centre(geometry, profile.placement, rng=rng, what=what)
    else:
        requested = centre = check_centre(geometry, centre, semi_axes, what, profile.organ)
    displacements = rng.normal(0.0, sigma, size=(3, 2, 3, 3))
    ellipsoid = EllipsoidParams(
        group=group.name,
        semi_axes_mm=semi_axes,  # type: ignore[arg-type]
        centre=centre,
        sigma_mm=sigma,
        displacements_mm=tuple(float(v) for v in displacements.ravel()),
    )
    if requested is None:
        return ellipsoid
    # The deformed shape's mass is not centred on its grid point: shift the grid point so that
    # the tumor's centre lands on the requested voxel.
    shape = placed_shape(ellipsoid, geometry.spacing)
    mass = np.array(ndimage.center_of_mass(shape.mask)) + shape.offset
    shift = np.rint(mass - np.array(requested)).astype(int)
    return dataclasses.replace(
        ellipsoid, centre=tuple(int(c - d) for c, d in zip(centre, shift, strict=True))
    )


def check_centre(geometry: OrganGeometry, centre, semi_axes_mm, what: str, organ: str):
    """A requested tumor centre (voxel indices of the input), refused with a message when it
    lies outside the organ (or on protected voxels) or closer to the organ's edge than 0.8 of
    the tumor's largest semi-axis (so that the organ hardly clips it and the tumor's centre
    stays where it was asked for)."""
    point = tuple(int(v) for v in centre)
    shape = geometry.mask.shape
    if len(point) != 3 or any(not 0 <= v < n for v, n in zip(point, shape, strict=True)):
        raise MaskError(f"the point {point} for {what} lies outside the image of shape {shape}")
    inside = geometry.domain_in(tuple(slice(v, v + 1) for v in point))
    if not inside.any():
        raise MaskError(
            f"the point {point} for {what} is not inside the {organ} mask (or is protected): "
            f"choose a point in the {organ}"
        )
    depth = 0.8 * max(semi_axes_mm)
    reach = [int(np.ceil(depth / s)) for s in geometry.spacing]
    box = tuple(slice(v - r, v + r + 1) for v, r in zip(point, reach, strict=True))
    offsets = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    ball = sum((o * s) ** 2 for o, s in zip(offsets, geometry.spacing, strict=True)) <= depth**2
    if not geometry.domain_in(box)[ball].all():
        raise MaskError(
            f"the point {point} for {what} is too close to the {organ}'s edge: a tumor with "
            f"semi-axes {tuple(semi_axes_mm)} mm needs {depth:.1f} mm of {organ} around its "
            "centre; choose a point deeper inside or a smaller tumor"
        )
    return point


def placed_shape(ellipsoid: EllipsoidParams, spacing) -> Shape:
    """The deformed shape of ``ellipsoid`` with its offset in volume indices."""
    shape = tumor_shape(ellipsoid.semi_axes_mm, ellipsoid.displacement_array(), spacing)
    offset = tuple(c + o for c, o in zip(ellipsoid.centre, shape.offset, strict=True))
    return Shape(shape.mask, offset)  # type: ignore[arg-type]


def clip_to_volume(shape: Shape, volume_shape) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(volume box, matching box inside ``shape.mask``) of the part inside the volume."""
    outer, inner = [], []
    for offset, size, n in zip(shape.offset, shape.mask.shape, volume_shape, strict=True):
        start, stop = max(0, offset), min(n, offset + size)
        stop = max(start, stop)
        outer.append(slice(start, stop))
        inner.append(slice(start - offset, stop - offset))
    return tuple(outer), tuple(inner)


class _RealisticChecker:
    """Scores candidate ellipsoids against vessels, the organ surface and earlier tumors."""

    def __init__(self, image, geometry: OrganGeometry, profile: OrganProfile, vessels=None):
        self.spec = profile.realistic
        self.geometry = geometry
        self.vessels = vessels or VesselDetector.fit(
            image, geometry.organ, geometry.box, geometry.spacing, self.spec
        )
        self.placed: list[Shape] = []

    def score(self, ellipsoid: EllipsoidParams) -> float:
        """0 for an acceptable candidate; larger is worse.

        Penalties, as fractions of the tumor's volume: overlap with earlier tumors, vessel
        voxels beyond ``max_vessel_fraction`` (a large tumor always meets some vessels; the
        render carves them out of it), protected voxels (any; the render carves them out
        too), and volume outside the organ's margin beyond ``max_outside_fraction``.
        """
        spacing = self.geometry.spacing
        shape = placed_shape(ellipsoid, spacing)
        outer, inner = clip_to_volume(shape, self.geometry.mask.shape)
        mask = shape.mask[inner]
        if mask.size == 0 or not mask.any():
            return float("inf")
        domain = self.geometry.domain_in(outer)
        hits = int(np.count_nonzero(mask & domain & self.vessels.mask(outer)))  # type: ignore[arg-type]
        protect = self.geometry.protect_in(outer)
        protected = 0 if protect is None else int(np.count_nonzero(mask & protect))
        grown_axes = tuple(a + self.spec.surface_margin_mm for a in ellipsoid.semi_axes_mm)
        grown = rasterize_ellipsoid(grown_axes, spacing)
        grid = grid_shape(grown_axes, spacing)
        grown_offset = tuple(
            c + o - n // 2 for c, o, n in zip(ellipsoid.centre, grown.offset, grid, strict=True)
        )
        g_outer, g_inner = clip_to_volume(Shape(grown.mask, grown_offset), self.geometry.mask.shape)  # type: ignore[arg-type]
        inside = np.count_nonzero(grown.mask[g_inner] & self.geometry.domain_in(g_outer))
        outside = 1.0 - inside / max(1, int(np.count_nonzero(grown.mask)))
        overlap = (
            0 if self.spec.allow_overlap else sum(_overlap(shape, other) for other in self.placed)
        )
        size = float(np.count_nonzero(mask))
        penalty = (
            (overlap + protected) / size
            + max(0.0, hits / size - self.spec.max_vessel_fraction)
            + max(0.0, outside - self.spec.max_outside_fraction)
        )
        return float(penalty)

    def accept(self, ellipsoid: EllipsoidParams) -> None:
        self.placed.append(placed_shape(ellipsoid, self.geometry.spacing))


def _overlap(a: Shape, b: Shape) -> int:
    start = [max(x, y) for x, y in zip(a.offset, b.offset, strict=True)]
    stop = [min(x, y) for x, y in zip(a.stop, b.stop, strict=True)]
    if any(lo >= hi for lo, hi in zip(start, stop, strict=True)):
        return 0
    part_a = a.mask[
        tuple(slice(lo - o, hi - o) for lo, hi, o in zip(start, stop, a.offset, strict=True))
    ]
    part_b = b.mask[
        tuple(slice(lo - o, hi - o) for lo, hi, o in zip(start, stop, b.offset, strict=True))
    ]
    return int(np.count_nonzero(part_a & part_b))


def sample_synthesis(
    image: np.ndarray,
    geometry: OrganGeometry | None,
    profile: OrganProfile,
    *,
    tumor_type: str,
    realistic: bool,
    rng: np.random.Generator,
    vessels: VesselDetector | None = None,
    min_fragment_voxels: int | None = None,
    centers=None,
    radius_mm: float | None = None,
    drop_hu: float | None = None,
) -> SynthesisParams:
    """Draw every random number of one call, in a fixed order, from ``rng``.

    ``vessels`` (profile ``realistic``) is fitted here when not given.
    ``min_fragment_voxels``: tumor parts smaller than this are removed (``None``: the
    ``realistic`` spec's value, or 0 for ``paper``, the published behaviour).
    ``centers``: one tumor at each of these voxel indices instead of the type's drawn count
    and places (its lesion group drawn among the type's); ``radius_mm``: every tumor's
    semi-axes; ``drop_hu``: the HU drop instead of the drawn one. Without them the draws are
    exactly those of the published method.
    """
    tumor = profile.tumor_type(tumor_type)
    geometry = check_room(geometry, tumor, profile.organ)
    if centers is not None:
        ellipsoids = _ellipsoids_at(centers, tumor, geometry, profile, rng, radius_mm)
        return _finish(ellipsoids, tumor, tumor_type, geometry, profile, realistic, rng,
                       min_fragment_voxels, drop_hu)  # fmt: skip
    checker = _RealisticChecker(image, geometry, profile, vessels) if realistic else None
    ellipsoids = []
    for group in tumor.groups:
        count = int(rng.integers(group.count[0], group.count[1], endpoint=True))
        for index in range(count):
            what = f"a {group.name} tumor ({tumor_type}, ellipsoid {index + 1} of {count})"
            if checker is None:
                ellipsoids.append(_draw_ellipsoid(group, geometry, profile, rng, what))
                continue
            best, best_score = None, float("inf")
            for _ in range(profile.realistic.max_candidates):
                candidate = _draw_ellipsoid(group, geometry, profile, rng, what)
                score = checker.score(candidate)
                if score < best_score:
                    best, best_score = candidate, score
                if score == 0:
                    break
            if best_score > 0:
                logger.info(
                    "no clean placement for %s; kept the best (penalty %.3f)", what, best_score
                )
            checker.accept(best)  # type: ignore[arg-type]
            ellipsoids.append(best)
    return _finish(ellipsoids, tumor, tumor_type, geometry, profile, realistic, rng,
                   min_fragment_voxels, drop_hu)  # fmt: skip


def _ellipsoids_at(centers, tumor: TumorType, geometry, profile, rng, radius_mm) -> list:
    if not 1 <= len(centers) <= 50:
        raise MaskError(f"give 1 to 50 tumor centres, got {len(centers)}")
    ellipsoids = []
    for index, centre in enumerate(centers):
        groups = tumor.groups
        group = groups[0] if len(groups) == 1 else groups[int(rng.integers(len(groups)))]
        kind = tumor.name if group.name == tumor.name else f"{tumor.name}, {group.name}"
        what = f"tumor {index + 1} ({kind})"
        ellipsoids.append(_draw_ellipsoid(group, geometry, profile, rng, what,
                                          centre=centre, radius_mm=radius_mm))  # fmt: skip
    return ellipsoids


def _finish(ellipsoids, tumor, tumor_type, geometry, profile, realistic, rng,
            min_fragment_voxels, drop_hu) -> SynthesisParams:  # fmt: skip
    """The texture and blend draws after the ellipsoids, and the parameter record."""
    appearance = tumor.appearance
    texture = sample_texture(profile.texture, rng=rng)
    blend = BlendParams(
        kind=appearance.kind,
        blur_sigma_mm=float(rng.uniform(*appearance.blur_sigma_mm)),
        difference_hu=float(rng.uniform(*appearance.difference_hu)),
        fluid_hu=float(rng.uniform(*appearance.fluid_hu)),
    )
    if realistic:
        # Drawn after everything the published method draws, so that ``paper`` is unchanged.
        blend = _realistic_blend(blend, appearance, profile.realistic, rng)
    if drop_hu is not None:
        blend = dataclasses.replace(blend, difference_hu=float(drop_hu))
    if min_fragment_voxels is None:
        min_fragment_voxels = profile.realistic.min_fragment_voxels if realistic else 0
    return SynthesisParams(
        organ=profile.organ,
        profile="realistic" if realistic else "paper",
        tumor_type=tumor_type,
        axial_axis=geometry.axial_axis,
        ellipsoids=tuple(ellipsoids),
        texture=texture,
        blend=blend,
        min_fragment_voxels=int(min_fragment_voxels),
    )


def _realistic_blend(blend: BlendParams, appearance, spec, rng) -> BlendParams:
    """Profile ``realistic``: the delivered drop and the enhancing rim, from the spec's
    distributions (``organs.LIVER_REALISTIC`` says where the liver's come from)."""
    low, high = spec.contrast_range_hu or appearance.difference_hu
    if spec.contrast_median_hu is None:
        drop = float(rng.uniform(low, high))
    else:
        drop = spec.contrast_median_hu * float(np.exp(rng.normal(0.0, spec.contrast_log_sd)))
        drop = float(np.clip(drop, low, high))
    blur = blend.blur_sigma_mm
    if spec.blur_sigma_mm is not None:
        blur = float(rng.uniform(*spec.blur_sigma_mm))
    return dataclasses.replace(
        blend,
        blur_sigma_mm=blur,
        difference_hu=drop,
        rim_fraction=float(rng.uniform(*spec.rim_fraction)),
        rim_width_mm=float(rng.uniform(*spec.rim_width_mm)),
        grain_hu=float(rng.uniform(*spec.grain_hu)),
        grain_seed=int(rng.integers(0, 2**63 - 1)),
    )
