"""Drawn parameters follow the spec's tables: counts, semi-axes (mm), sigmas, centres, texture.

Only the sampling step runs here (no rendering), over many seeds, so that both "stays in the
range" and "reaches both ends of the range" can be checked. The expected ranges are typed in
from shared/spec/synthesis.md, not read from the implementation.
"""

from __future__ import annotations

import numpy as np
import pytest

from syntumor_core.synthesis import get_organ_profile
from syntumor_core.synthesis.placement import organ_geometry
from syntumor_core.synthesis.sampling import sample_synthesis
from syntumor_core.synthesis.shape import tumor_shape

SEEDS = range(120)
# Spec table "Tumor types": (ellipsoids per call, semi-axes in mm, sigma kind, sigma range).
SPEC = {
    "tiny": ((3, 10), (3, 5), "uniform", (0.5, 1.0)),
    "small": ((3, 10), (6, 10), "integer", (1, 2)),
    "medium": ((2, 5), (12, 20), "integer", (3, 6)),
    "large": ((1, 3), (24, 40), "integer", (5, 10)),
}
# The "mix" type: each group with its own count rule (note small 5..10 here).
MIX_COUNTS = {"tiny": (3, 10), "small": (5, 10), "medium": (2, 5), "large": (1, 3)}
SPACINGS = {"2mm": (2.0, 2.0, 2.0), "0.7x0.7x2.5mm": (0.7, 0.7, 2.5)}


def _ellipsoid_mask(spacing, semi_axes_mm=(80.0, 65.0, 55.0)) -> np.ndarray:
    shape = tuple(int(np.ceil(2 * a / s)) + 6 for a, s in zip(semi_axes_mm, spacing, strict=True))
    axes = [
        ((np.arange(n) - (n - 1) / 2.0) * s / a) ** 2
        for n, s, a in zip(shape, spacing, semi_axes_mm, strict=True)
    ]
    return axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :] <= 1.0


@pytest.fixture(scope="module", params=list(SPACINGS), ids=list(SPACINGS))
def organ(request):
    """(image, geometry) of a 1.2-litre ellipsoid liver: room for large tumors."""
    spacing = SPACINGS[request.param]
    mask = _ellipsoid_mask(spacing)
    image = np.broadcast_to(np.float32(110.0), mask.shape)  # unused by the paper sampler
    return image, organ_geometry(mask, spacing, axial_axis=2)


_CACHE: dict = {}


def _draws(organ, tumor_type: str):
    """SynthesisParams of every seed in SEEDS (cached per organ and type)."""
    image, geometry = organ
    key = (geometry.spacing, tumor_type)
    if key not in _CACHE:
        profile = get_organ_profile("liver")
        _CACHE[key] = [
            sample_synthesis(
                image,
                geometry,
                profile,
                tumor_type=tumor_type,
                realistic=False,
                rng=np.random.default_rng(seed),
            )
            for seed in SEEDS
        ]
    return _CACHE[key]


def _assert_range_and_cover(values, low, high, what: str, *, integer: bool) -> None:
    values = np.asarray(values, dtype=float)
    assert values.min() >= low and values.max() <= high, (
        f"{what}: drawn {values.min()}..{values.max()}, spec {low}..{high}"
    )
    if integer:
        assert np.array_equal(values, np.round(values)), f"{what}: not integers"
        drawn = set(values.astype(int).tolist())
        assert drawn == set(range(int(low), int(high) + 1)), f"{what}: drew only {sorted(drawn)}"
    else:
        # With n uniform draws the gap at each end is about (high - low) / n; allow 8 times it.
        slack = 8.0 * (high - low) / (values.size + 1)
        assert values.min() <= low + slack and values.max() >= high - slack, (
            f"{what}: drawn {values.min():.4f}..{values.max():.4f} does not reach {low}..{high}"
        )


def _check_group(ellipsoids, name: str, counts, what: str) -> None:
    (count_low, count_high), (axis_low, axis_high), sigma_kind, sigma_range = SPEC[name]
    if counts is not None:
        _assert_range_and_cover(counts, *MIX_COUNTS[name], f"{what} count", integer=True)
    axes = [a for e in ellipsoids for a in e.semi_axes_mm]
    assert all(isinstance(a, int) for a in axes)
    _assert_range_and_cover(axes, axis_low, axis_high, f"{what} semi-axes", integer=True)
    _assert_range_and_cover(
        [e.sigma_mm for e in ellipsoids],
        *sigma_range,
        f"{what} sigma",
        integer=sigma_kind == "integer",
    )


@pytest.mark.parametrize("tumor_type", list(SPEC))
def test_single_type_draws_stay_in_and_cover_the_spec_ranges(organ, tumor_type):
    draws = _draws(organ, tumor_type)
    counts = [len(p.ellipsoids) for p in draws]
    _assert_range_and_cover(counts, *SPEC[tumor_type][0], f"{tumor_type} count", integer=True)
    ellipsoids = [e for p in draws for e in p.ellipsoids]
    assert {e.group for e in ellipsoids} == {tumor_type}
    assert {p.tumor_type for p in draws} == {tumor_type}
    _check_group(ellipsoids, tumor_type, None, tumor_type)


def test_mix_draws_each_group_by_its_own_rule(organ):
    draws = _draws(organ, "mix")
    order = list(MIX_COUNTS)
    for params in draws:
        groups = [e.group for e in params.ellipsoids]
        # Groups come one after the other: tiny, then small, then medium, then large.
        assert groups == sorted(groups, key=order.index)
        assert set(groups) == set(order)
    for name in order:
        counts = [sum(e.group == name for e in p.ellipsoids) for p in draws]
        ellipsoids = [e for p in draws for e in p.ellipsoids if e.group == name]
        _check_group(ellipsoids, name, counts, f"mix/{name}")


def test_displacements_are_normal_with_the_drawn_sigma(organ):
    ellipsoids = [e for p in _draws(organ, "mix") for e in p.ellipsoids]
    assert all(len(e.displacements_mm) == 3 * 2 * 3 * 3 for e in ellipsoids)
    standardised = np.concatenate([np.asarray(e.displacements_mm) / e.sigma_mm for e in ellipsoids])
    assert abs(standardised.mean()) < 0.02
    assert abs(standardised.std() - 1.0) < 0.02
    # Each ellipsoid uses its own sigma: large ones are deformed more than tiny ones.
    spread = {
        group: np.std(np.concatenate([e.displacements_mm for e in ellipsoids if e.group == group]))
        for group in MIX_COUNTS
    }
    assert spread["tiny"] < spread["small"] < spread["medium"] < spread["large"]


def test_centres_lie_on_eroded_slices_in_the_middle_of_the_organ(organ):
    """Centre slice at 30–70 % of the axial extent, on a slice eroded by a 5 mm square.

    The release eroded with a 5×5 square at 1 mm: every voxel within 2 mm in-plane of a
    centre is organ.
    """
    _, geometry = organ
    mask, box, spacing = geometry.mask, geometry.box, geometry.spacing
    start, stop = box[2].start, box[2].stop
    half = [int(np.floor(2.0 / s)) for s in spacing[:2]]  # the erosion's reach, voxels
    fractions = []
    for params in _draws(organ, "medium"):
        for ellipsoid in params.ellipsoids:
            x, y, z = ellipsoid.centre
            assert mask[x, y, z]
            fractions.append((z - start) / (stop - 1 - start))
            square = mask[x - half[0] : x + half[0] + 1, y - half[1] : y + half[1] + 1, z]
            assert square.all(), f"centre {ellipsoid.centre} is within 2 mm of the surface"
    fractions = np.asarray(fractions)
    step = spacing[2] / ((stop - 1 - start) * spacing[2])  # one slice, as a fraction
    assert fractions.min() >= 0.3 - step and fractions.max() <= 0.7 + step
    assert fractions.min() <= 0.3 + 2 * step and fractions.max() >= 0.7 - 2 * step


def test_texture_and_blend_draws_cover_their_ranges(organ):
    draws = _draws(organ, "mix")
    textures = [p.texture for p in draws]
    assert {t.sigma_a_mm for t in textures} == {3.0, 6.0, 9.0, 12.0, 15.0}
    assert {t.sigma_b_mm for t in textures} == {4.0, 7.0}
    for name, (low, high) in {
        "scale": (0.19, 0.21),
        "base": (0.04, 0.06),
        "u0": (0.5, 0.55),
    }.items():
        _assert_range_and_cover(
            [getattr(t, name) for t in textures], low, high, name, integer=False
        )
    assert len({t.seed for t in textures}) == len(textures)
    blends = [p.blend for p in draws]
    assert {b.kind for b in blends} == {"hypodense"}
    _assert_range_and_cover([b.blur_sigma_mm for b in blends], 1.0, 2.0, "blur", integer=False)
    _assert_range_and_cover(
        [b.difference_hu for b in blends], 65.0, 145.0, "difference", integer=False
    )


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5), (1.5, 0.8, 2.0)])
def test_undeformed_ellipsoid_has_its_semi_axes_in_mm(spacing):
    semi_axes = (12, 16, 20)
    shape = tumor_shape(semi_axes, np.zeros((3, 2, 3, 3)), spacing)
    mask = shape.mask
    for axis, (a, s) in enumerate(zip(semi_axes, spacing, strict=True)):
        other = tuple(i for i in range(3) if i != axis)
        filled = np.flatnonzero(mask.any(axis=other))
        extent_mm = filled.size * s
        assert abs(extent_mm - 2 * a) <= 1.5 * s, (axis, extent_mm, a)
        # Centred on the centre voxel (offset is relative to it).
        low_mm = (shape.offset[axis] + filled[0]) * s
        high_mm = (shape.offset[axis] + filled[-1]) * s
        assert abs(low_mm + high_mm) <= s + 1e-9
    volume = mask.sum() * np.prod(spacing)
    expected = 4.0 / 3.0 * np.pi * np.prod(semi_axes)
    assert abs(volume / expected - 1.0) < 0.1


def _occupied_mm(shape, spacing) -> np.ndarray:
    """Voxel-centre positions (mm) of a tumor_shape result, relative to its centre."""
    index = np.argwhere(shape.mask) + np.asarray(shape.offset)
    return index * np.asarray(spacing)


def test_deformation_is_in_mm_at_any_spacing():
    """The same drawn displacements give the same physical shape at 1 mm and 0.7×0.7×2.5 mm."""
    generator = np.random.default_rng(7)
    overlaps = []
    for _ in range(5):
        semi_axes = tuple(int(v) for v in generator.integers(24, 40, size=3, endpoint=True))
        displacements = generator.normal(0.0, 8.0, size=(3, 2, 3, 3))
        fine = tumor_shape(semi_axes, displacements, (1.0, 1.0, 1.0))
        coarse_spacing = (0.7, 0.7, 2.5)
        coarse = tumor_shape(semi_axes, displacements, coarse_spacing)
        fine_volume = fine.mask.sum()
        coarse_volume = coarse.mask.sum() * np.prod(coarse_spacing)
        assert abs(coarse_volume / fine_volume - 1.0) < 0.1
        # Where the coarse shape has a voxel, the 1 mm shape has one too.
        index = np.rint(_occupied_mm(coarse, coarse_spacing)).astype(int) - np.asarray(fine.offset)
        inside = np.all((index >= 0) & (index < np.asarray(fine.mask.shape)), axis=1)
        hits = np.zeros(len(index), dtype=bool)
        hits[inside] = fine.mask[tuple(index[inside].T)]
        overlaps.append(hits.mean())
        # The deformation did something: the shape is no longer the plain ellipsoid.
        plain = tumor_shape(semi_axes, np.zeros((3, 2, 3, 3)), (1.0, 1.0, 1.0))
        assert plain.mask.shape != fine.mask.shape or not np.array_equal(plain.mask, fine.mask)
    assert min(overlaps) > 0.9, overlaps
