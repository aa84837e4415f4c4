"""Designing a fair reader study: tumor sizes, size-matched synthesis plans, reading orders.

The synthetic arm must not be told apart by size alone (spec: reader-study.md, "What makes the
study fair"). So the real arm's tumors are measured from their label maps
(:func:`tumor_diameters_mm`), and each synthetic case is planned after one real case
(:func:`plan_matched_cases`): the tumor type of the organ profile whose semi-axis range covers
the real tumor's equivalent radius (:func:`match_tumor_type`), drawn as many times as the real
case has tumors of that size class (:func:`matched_profile`).

Each reader reads the cases in an own random order drawn from a recorded seed, with ``repeats``
cases shown a second time for intra-reader agreement (:func:`reading_order`).

Example:
    >>> import numpy as np
    >>> from syntumor_core.synthesis import get_organ_profile
    >>> labels = np.zeros((40, 40, 40), np.uint8); labels[10:20, 10:20, 10:20] = 2
    >>> [round(d, 1) for d in tumor_diameters_mm(labels, (1.0, 1.0, 1.0))]
    [12.4]
    >>> match_tumor_type(6.2, get_organ_profile("liver")).tumor_type
    'small'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from syntumor_core.errors import ParameterError
from syntumor_core.synthesis.config import OrganProfile, TumorType

TUMOR_LABEL = 2
MIN_TUMOR_VOXELS = 8
"""Connected tumor components smaller than this are label noise, not tumors."""


def _tumor_components(labels: np.ndarray, tumor_label: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Connected tumor components (26-connectivity) inside the tumors' bounding box.

    Returns the component map of the box, the number of components and the box's first voxel
    (labelling only the box is much faster when tumors are small).
    """
    tumor = labels == tumor_label
    present = [
        np.flatnonzero(tumor.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)
    ]
    if any(index.size == 0 for index in present):
        return np.zeros((0, 0, 0), np.int32), 0, np.zeros(3, int)
    start = np.array([index[0] for index in present])
    box = tuple(slice(int(index[0]), int(index[-1]) + 1) for index in present)
    components, count = ndimage.label(tumor[box], structure=np.ones((3, 3, 3), bool))
    return components, int(count), start


def equivalent_diameter_mm(volume_mm3: float) -> float:
    """Diameter of the sphere with this volume: ``(6 V / pi) ** (1/3)``."""
    if volume_mm3 < 0:
        raise ParameterError(f"`volume_mm3` must be >= 0, got {volume_mm3}")
    return (6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0)


def tumor_diameters_mm(
    labels: np.ndarray,
    spacing: Sequence[float],
    *,
    tumor_label: int = TUMOR_LABEL,
    min_voxels: int = MIN_TUMOR_VOXELS,
) -> list[float]:
    """Equivalent diameters of the tumors of a label map, largest first.

    A tumor is a connected component (26-connectivity) of ``labels == tumor_label`` with at
    least ``min_voxels`` voxels; its equivalent diameter is that of the sphere of equal volume.

    Args:
        labels: 3-D integer label map.
        spacing: voxel size in mm per axis.
        tumor_label: value of tumor voxels.
        min_voxels: smallest component counted.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or len(spacing) != 3:
        raise ParameterError(
            f"need a 3-D label map and three spacings, got shape {labels.shape} and {spacing}"
        )
    voxel_mm3 = float(np.prod([float(s) for s in spacing]))
    components, count, _ = _tumor_components(labels, tumor_label)
    if count == 0:
        return []
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    kept = sorted((int(n) for n in sizes if n >= min_voxels), reverse=True)
    return [equivalent_diameter_mm(n * voxel_mm3) for n in kept]


@dataclass(frozen=True)
class TypeMatch:
    """The tumor type chosen for a radius.

    Args:
        tumor_type: name of the type in the organ profile.
        radius_mm: the radius that was matched (half the equivalent diameter).
        semi_axis_range_mm: the type's range of semi-axes, inclusive.
        covered: True when the range covers the radius; False when the nearest type was taken.
    """

    tumor_type: str
    radius_mm: float
    semi_axis_range_mm: tuple[int, int]
    covered: bool


def _single_size_types(profile: OrganProfile) -> dict[str, TumorType]:
    """Types of one lesion group that paint solid tumors (no mixes, no cysts)."""
    return {
        name: tumor
        for name, tumor in profile.types.items()
        if len(tumor.groups) == 1 and tumor.appearance.kind == "hypodense"
    }


def match_tumor_type(radius_mm: float, profile: OrganProfile) -> TypeMatch:
    """The solid single-size tumor type of ``profile`` whose semi-axis range covers ``radius_mm``.

    Ranges are ``[int(0.75 r), int(1.25 r)]`` of each type's base radius r (liver: tiny 3-5,
    small 6-10, medium 12-20, large 24-40 mm). A radius in a gap between ranges, or outside all,
    gets the type with the nearest range (the smaller one on a tie), marked ``covered=False``.

    Args:
        radius_mm: equivalent radius of a real tumor, > 0.
        profile: organ profile, e.g. ``get_organ_profile("liver")``.
    """
    if not (radius_mm > 0 and math.isfinite(radius_mm)):
        raise ParameterError(f"`radius_mm` must be a positive number, got {radius_mm}")
    candidates = _single_size_types(profile)
    if not candidates:
        raise ParameterError(f"organ profile {profile.organ!r} has no solid single-size type")

    def distance(item: tuple[str, TumorType]) -> tuple[float, float]:
        low, high = item[1].groups[0].semi_axis_range_mm
        gap = max(low - radius_mm, radius_mm - high, 0.0)
        return gap, item[1].groups[0].radius_mm

    name, tumor = min(candidates.items(), key=distance)
    low, high = tumor.groups[0].semi_axis_range_mm
    return TypeMatch(name, float(radius_mm), (low, high), bool(low <= radius_mm <= high))


def matched_profile(profile: OrganProfile, tumor_type: str, count: int) -> OrganProfile:
    """``profile`` with ``tumor_type`` drawing exactly ``count`` tumors per call.

    The organ profiles draw several tumors per call (liver "small": 3-10); a synthetic case
    matched to a real case with one tumor must have one. Everything else is unchanged, and the
    manifest of a synthesis with the returned profile records it, so replays stay exact.

    Args:
        profile: the organ profile.
        tumor_type: a single-group type of it.
        count: tumors per call, >= 1.
    """
    tumor = profile.tumor_type(tumor_type)
    if len(tumor.groups) != 1:
        raise ParameterError(
            f"tumor type {tumor_type!r} mixes {len(tumor.groups)} size classes; "
            "match a single-size type"
        )
    if not (isinstance(count, int) and count >= 1):
        raise ParameterError(f"`count` must be an integer >= 1, got {count!r}")
    group = dataclasses.replace(tumor.groups[0], count=(count, count))
    types = {**profile.types, tumor_type: dataclasses.replace(tumor, groups=(group,))}
    return dataclasses.replace(profile, types=types)


@dataclass(frozen=True)
class CasePlan:
    """How to synthesize one case of the synthetic arm.

    Args:
        mirrors: index of the real case whose tumors it copies.
        diameter_mm: equivalent diameter of that case's largest tumor.
        tumor_type: the matched type (see :func:`match_tumor_type`).
        count: how many tumors of that type.
        covered: whether the type's range covers the real radius.
        seed: seed of the synthesis.
    """

    mirrors: int
    diameter_mm: float
    tumor_type: str
    count: int
    covered: bool
    seed: int


def plan_matched_cases(
    real_diameters: Sequence[Sequence[float]],
    n_synthetic: int,
    profile: OrganProfile,
    *,
    rng: np.random.Generator,
    max_count: int = 3,
) -> list[CasePlan]:
    """Plan ``n_synthetic`` synthetic cases whose tumors match the real arm's sizes.

    The real cases (those with at least one tumor) are dealt out in shuffled rounds, so every
    real case is mirrored once before any is mirrored twice and the synthetic arm's size
    distribution follows the real arm's. Each plan takes the type matching the mirrored case's
    largest tumor and as many tumors as that case has of the same type (at most ``max_count``).

    Args:
        real_diameters: per real case, its tumors' equivalent diameters in mm
            (:func:`tumor_diameters_mm`).
        n_synthetic: number of synthetic cases, >= 1.
        profile: organ profile of the synthesis.
        rng: generator of the dealing order and the synthesis seeds.
        max_count: most tumors in one synthetic case.
    """
    usable = [index for index, sizes in enumerate(real_diameters) if len(sizes) > 0]
    if not usable:
        raise ParameterError(
            "no real case has a tumor in its label map (label 2): nothing to match sizes to"
        )
    if n_synthetic < 1:
        raise ParameterError(f"`n_synthetic` must be >= 1, got {n_synthetic}")
    order: list[int] = []
    while len(order) < n_synthetic:
        order.extend(int(i) for i in rng.permutation(usable))
    plans = []
    for mirrors in order[:n_synthetic]:
        sizes = sorted(real_diameters[mirrors], reverse=True)
        match = match_tumor_type(sizes[0] / 2.0, profile)
        same = sum(match_tumor_type(d / 2.0, profile).tumor_type == match.tumor_type for d in sizes)
        plans.append(
            CasePlan(
                mirrors=mirrors,
                diameter_mm=round(float(sizes[0]), 2),
                tumor_type=match.tumor_type,
                count=int(min(max(same, 1), max_count)),
                covered=match.covered,
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return plans


def reading_order(n_cases: int, repeats: int, *, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A reader's order: every case once in random order, ``repeats`` of them again later.

    A repeated case comes back more than ``max(1, n_cases // 3)`` positions after its first
    showing, so that it is not simply remembered: repeats are drawn among the cases whose first
    showing leaves that room (all cases only when too few do).

    Args:
        n_cases: number of cases, >= 1.
        repeats: how many cases are shown twice, 0 <= repeats <= n_cases.
        rng: the reader's generator (seed it from a recorded seed).

    Returns:
        ``(case index, reading)`` pairs, reading 0 for the first showing and 1 for the repeat.
    """
    if n_cases < 1 or not 0 <= repeats <= n_cases:
        raise ParameterError(
            f"need n_cases >= 1 and 0 <= repeats <= n_cases, got {n_cases} and {repeats}"
        )
    order: list[tuple[int, int]] = [(int(i), 0) for i in rng.permutation(n_cases)]
    gap = max(1, n_cases // 3)
    # Repeat cases whose first showing leaves room for the gap (the earlier part of the order);
    # only when there are too few, others too. Later insertions never shorten a gap.
    roomy = [case for position, (case, _) in enumerate(order) if position < n_cases - gap]
    chosen = list(rng.permutation(roomy))[:repeats]
    rest = [case for case, _ in order if case not in chosen]
    chosen += list(rng.permutation(rest))[: repeats - len(chosen)]
    for case in (int(c) for c in chosen):
        first = order.index((case, 0))
        earliest = min(first + 1 + gap, len(order))
        order.insert(int(rng.integers(earliest, len(order) + 1)), (case, 1))
    return order


def focus_point_mm(
    labels: np.ndarray | None,
    affine: np.ndarray,
    shape: Sequence[int] | None = None,
    *,
    tumor_label: int = TUMOR_LABEL,
) -> list[float]:
    """The world point (mm) a case is centred on when shown to readers.

    The same rule for every arm, so centring gives nothing away: the centroid of the largest
    tumor (a connected component of ``tumor_label``); without a tumor the centroid of all
    labelled voxels; without labels the volume's centre.

    Args:
        labels: the case's label map, or None.
        affine: voxel → world affine of the case.
        shape: the volume's shape (needed when ``labels`` is None).
        tumor_label: value of tumor voxels.
    """
    affine = np.asarray(affine, float)
    voxel = None
    if labels is not None:
        labels = np.asarray(labels)
        shape = labels.shape
        components, count, start = _tumor_components(labels, tumor_label)
        if count:
            sizes = np.bincount(components.ravel(), minlength=count + 1)
            sizes[0] = 0
            voxel = start + np.array(ndimage.center_of_mass(components == int(np.argmax(sizes))))
        elif np.any(labels > 0):
            voxel = np.array(ndimage.center_of_mass(labels > 0))
    if voxel is None:
        if shape is None:
            raise ParameterError("give `shape` when there is no label map")
        voxel = (np.asarray(shape, float) - 1) / 2.0
    return [float(v) for v in affine[:3, :3] @ voxel + affine[:3, 3]]
