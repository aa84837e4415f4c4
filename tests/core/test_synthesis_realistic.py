"""The blur halo of the paper profile, the realistic profile, and the pancreas/kidney profiles.

Halo: the spec measured, on the original code, voxels changed by > 1 HU outside the label at
about 3–4× the tumor volume for tiny tumors and about 0.2× for large ones. Realistic: tumors
avoid vessels, push the organ outward and carry a bright capsule. Pancreas and kidney: tumors
stay in their organ and cysts have water density.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from syntumor_core.errors import ManifestError
from syntumor_core.synthesis import get_organ_profile, replay, synthesize
from syntumor_core.synthesis.effects import VesselDetector
from syntumor_core.synthesis.placement import bounding_box


def _halo_ratio(case, out) -> float:
    tumor = out.label == 2
    changed = np.abs(out.image - case.image) > 1.0
    return float(np.count_nonzero(changed & ~tumor) / np.count_nonzero(tumor))


def test_halo_of_tiny_tumors_is_a_few_times_their_volume(small_liver):
    ratios = [
        _halo_ratio(
            small_liver,
            synthesize(
                small_liver.image,
                small_liver.mask,
                spacing=small_liver.spacing,
                seed=seed,
                tumor_type="tiny",
            ),
        )
        for seed in range(8)
    ]
    # Measured: median 4.8 (2.4–6.0) at 1.5 mm; 4.6 at 1 mm. The spec's original: about 3–4.
    assert 1.5 <= np.median(ratios) <= 6.0, ratios


def test_halo_of_large_tumors_is_a_fraction_of_their_volume(big_liver):
    ratios = [
        _halo_ratio(
            big_liver,
            synthesize(
                big_liver.image,
                big_liver.mask,
                spacing=big_liver.spacing,
                seed=seed,
                tumor_type="large",
            ),
        )
        for seed in range(6)
    ]
    # Measured: median 0.29 (0.15–0.42) at 2 mm; 0.35 at 1 mm. The spec's original: about 0.2.
    assert 0.08 <= np.median(ratios) <= 0.5, ratios


# --- realistic: vessels --------------------------------------------------------------------------


def _tumors(image, mask, spacing, seeds, tumor_type, profile) -> list[np.ndarray]:
    """The tumor mask of each seed (each one non-empty)."""
    tumors = []
    for seed in seeds:
        out = synthesize(
            image, mask, spacing=spacing, seed=seed, tumor_type=tumor_type, profile=profile
        )
        tumors.append(out.label == 2)
        assert tumors[-1].any()
    return tumors


def _on(tumors, vessels) -> list[int]:
    return [int(np.count_nonzero(tumor & vessels)) for tumor in tumors]


@pytest.mark.parametrize(("tumor_type", "seeds"), [("small", 3), ("medium", 3), ("mix", 1)])
def test_realistic_tumors_never_cover_the_synthetic_vessels(small_liver, tumor_type, seeds):
    args = (small_liver.image, small_liver.mask, small_liver.spacing, range(seeds), tumor_type)
    assert _on(_tumors(*args, "realistic"), small_liver.vessels) == [0] * seeds
    if tumor_type == "mix":  # the paper profile does put tumor on them: the check can fail
        assert sum(_on(_tumors(*args, "paper"), small_liver.vessels)) > 100


def test_realistic_tumors_avoid_the_phantom_vessels(phantom):
    """Phantom at 2.5 mm: no tumor voxel on a vessel the engine detects, and far fewer on the
    phantom's true vessels than with the paper profile.

    Not exactly zero on the true vessels: the intensity threshold (organ median + 2.5 robust
    s.d.) misses dim partial-volume voxels of thin vessels (recall about 91 % at 2.5 mm and
    98 % at 1.5 mm on the phantom), and tumors may cover those.
    """
    liver = phantom.organ_mask("liver")
    image, spacing, vessels = phantom.image.array, phantom.image.spacing, phantom.vessels
    box = bounding_box(liver)
    detector = VesselDetector.fit(image, liver, box, spacing, get_organ_profile("liver").realistic)
    detected = np.zeros(liver.shape, dtype=bool)
    detected[box] = detector.vessels
    assert np.count_nonzero(detected & vessels) > 0.85 * np.count_nonzero(vessels)
    paper, realistic = [], []
    for tumor_type in ("medium", "large"):
        paper += _tumors(image, liver, spacing, range(3), tumor_type, "paper")
        realistic += _tumors(image, liver, spacing, range(3), tumor_type, "realistic")
    assert _on(realistic, detected) == [0] * len(realistic)
    # Fractions of tumor volume on the phantom's vessels (these fill ~4 % of its liver).
    paper_fraction = sum(_on(paper, vessels)) / sum(int(t.sum()) for t in paper)
    realistic_fraction = sum(_on(realistic, vessels)) / sum(int(t.sum()) for t in realistic)
    assert paper_fraction > 0.02, paper_fraction
    assert realistic_fraction < 0.01 and realistic_fraction * 5 < paper_fraction, (
        _on(paper, vessels),
        _on(realistic, vessels),
    )


def test_with_the_phantoms_vessel_mask_no_tumor_voxel_is_on_a_vessel(phantom):
    liver = phantom.organ_mask("liver")
    image, spacing, vessels = phantom.image.array, phantom.image.spacing, phantom.vessels
    for tumor_type in ("medium", "large", "mix"):
        for seed in range(2):
            out = synthesize(
                image,
                liver,
                spacing=spacing,
                seed=seed,
                tumor_type=tumor_type,
                profile="realistic",
                vessel_mask=vessels,
            )
            tumor = out.label == 2
            assert tumor.any() and not (tumor & vessels).any(), (tumor_type, seed)
    again = replay(out.manifest, image, liver, vessel_mask=vessels)
    assert np.array_equal(again.image, out.image) and np.array_equal(again.label, out.label)
    with pytest.raises(ManifestError, match="vessel mask"):
        replay(out.manifest, image, liver)
    with pytest.raises(ManifestError, match="vessel mask differs"):
        replay(out.manifest, image, liver, vessel_mask=np.zeros_like(vessels))


# --- realistic: mass effect and capsule ------------------------------------------------------------


def test_mass_effect_pushes_parenchyma_outward_inside_the_organ_only(big_liver):
    """The warp moves tissue inside the organ away from the tumor, fades to nothing at the
    organ's boundary, and neither changes a voxel outside the mask nor grows the organ."""
    mask, spacing = big_liver.mask, np.asarray(big_liver.spacing)
    liver = get_organ_profile("liver")
    still = dataclasses.replace(
        liver, realistic=dataclasses.replace(liver.realistic, mass_effect=0.0)
    )
    for seed in range(2):
        kwargs = dict(spacing=big_liver.spacing, seed=seed, tumor_type="large", profile="realistic")
        out = synthesize(big_liver.image, mask, **kwargs)
        flat = synthesize(big_liver.image, mask, organ_profile=still, **kwargs)
        assert np.array_equal(out.label >= 1, mask), "the organ label changed"
        assert np.array_equal(out.image[~mask], big_liver.image[~mask])
        assert np.array_equal(out.label, flat.label)
        # Beyond the blur's reach (3 sigma <= 6 mm) the tumor's paint is zero: differences
        # there are the warp's.
        far = ndimage.distance_transform_edt(out.label != 2, sampling=spacing) > 7.0
        moved = (out.image != flat.image) & far
        assert moved.sum() > 500, "the mass effect moved nothing"
        # Every moved voxel lies within the warp's reach of some tumor centre ...
        points = np.argwhere(moved) * spacing
        near = np.zeros(len(points), dtype=bool)
        for ellipsoid in out.params.ellipsoids:
            reach = liver.realistic.mass_effect_reach * float(np.mean(ellipsoid.semi_axes_mm))
            near |= np.linalg.norm(points - np.asarray(ellipsoid.centre) * spacing, axis=1) < reach
        assert near.all()
        # ... and none touches the organ's boundary (the shift fades to zero there).
        edge = mask & ~ndimage.binary_erosion(mask, np.ones((3, 3, 3), bool))
        assert not (moved & edge).any()


def test_mass_effect_moves_a_feature_away_from_the_tumor():
    """A bright shell around the tumor's centre ends up farther out after the warp, and
    nothing outside the domain changes."""
    from syntumor_core.synthesis.config import RealisticSpec
    from syntumor_core.synthesis.effects import radial_warp

    spacing = (1.0, 1.0, 1.0)
    grid = np.indices((61, 61, 61)).astype(np.float32) - 30.0
    radius = np.sqrt((grid**2).sum(axis=0))
    image = np.where(np.abs(radius - 12.0) < 1.0, 200.0, 100.0).astype(np.float32)
    domain = radius < 29.0
    before = float((radius * (image - 100)).sum() / (image - 100).sum())
    spec = RealisticSpec(mass_effect=0.3, mass_effect_reach=1.75)
    warped = image.copy()
    radial_warp(warped, domain, np.array([30.0, 30.0, 30.0]), 14.0, spec, spacing)
    after = float((radius * (warped - 100)).sum() / (warped - 100).sum())
    assert after > before + 1.0
    assert np.array_equal(warped[~domain], image[~domain])


def _rim_and_core(tumor: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Tumor voxels within 1.5 mm of its edge (at least its outer layer), and those deeper
    than 3.5 mm. Depth is the distance to the nearest voxel outside the tumor."""
    depth = ndimage.distance_transform_edt(tumor, sampling=spacing)
    return tumor & (depth <= max(1.5, *spacing)), tumor & (depth > 3.5)


@pytest.mark.parametrize("case_name", ["small_liver", "big_liver"])
def test_capsule_rim_is_brighter_than_without_capsule(request, case_name):
    case = request.getfixturevalue(case_name)  # 1.5 mm and 2 mm voxels
    liver = get_organ_profile("liver")
    spec = dataclasses.replace(liver.realistic, capsule_width_mm=2.0, capsule_hu=30.0)
    capsule = dataclasses.replace(liver, realistic=spec)
    for seed in range(2):
        kwargs = dict(spacing=case.spacing, seed=seed, tumor_type="medium", profile="realistic")
        with_rim = synthesize(case.image, case.mask, organ_profile=capsule, **kwargs)
        without = synthesize(case.image, case.mask, **kwargs)
        assert np.array_equal(with_rim.label, without.label)
        rim, core = _rim_and_core(with_rim.label == 2, case.spacing)
        assert rim.sum() > 50 and core.sum() > 50
        rim_with, core_with = with_rim.image[rim].mean(), with_rim.image[core].mean()
        rim_without, core_without = without.image[rim].mean(), without.image[core].mean()
        assert rim_with > rim_without + 0.3 * 30.0
        assert abs(core_with - core_without) < 0.25 * (rim_with - rim_without)


def test_a_rim_thinner_than_a_voxel_gets_a_partial_weight():
    from syntumor_core.synthesis.effects import capsule_rim, enhancing_rim

    tumor = np.zeros((21, 21, 21), dtype=bool)
    tumor[3:18, 3:18, 3:18] = True
    for spacing in ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)):
        thin = capsule_rim(tumor, 0.5, spacing)
        assert np.isclose(thin[3, 10, 10], 0.5 / spacing[0])  # the outer layer only
        assert thin[4, 10, 10] == 0 and thin[10, 10, 10] == 0
        wide = capsule_rim(tumor, 3.0, spacing)
        assert wide[3, 10, 10] == 1.0 and not wide[~tumor].any()
        # The enhancing rim's outer layer is the mean of exp(-z / w) over its depth.
        w = 0.5
        outer = enhancing_rim(tumor, w, spacing)[3, 10, 10]
        assert np.isclose(outer, w / spacing[0] * (1 - np.exp(-spacing[0] / w)), rtol=1e-5)
        assert outer < 0.5


def test_realistic_profile_keeps_labels_and_box(small_liver):
    out = synthesize(
        small_liver.image,
        small_liver.mask,
        spacing=small_liver.spacing,
        seed=6,
        tumor_type="mix",
        profile="realistic",
    )
    assert set(np.unique(out.label).tolist()) == {0, 1, 2}
    assert out.image.dtype == np.float32 and out.label.dtype == np.uint8
    outside = np.ones(out.image.shape, dtype=bool)
    outside[out.result.changed_box] = False
    assert np.array_equal(out.image[outside], small_liver.image[outside])
    assert np.array_equal(out.label[outside], small_liver.mask[outside].astype(np.uint8))


# --- other organs (phantom) ------------------------------------------------------------------


ORGANS = {
    "pancreas": ("pancreas", ["tiny", "small", "medium", "cyst", "mix"]),
    "kidney_right": ("kidney", ["small", "medium", "large", "cyst", "mix"]),
    "kidney_left": ("kidney", ["small", "medium", "large", "cyst", "mix"]),
}


@pytest.mark.parametrize("mask_name", list(ORGANS))
def test_pancreas_and_kidney_tumors_lie_inside_their_organ(phantom, mask_name):
    organ, types = ORGANS[mask_name]
    mask = phantom.organ_mask(mask_name)
    image = phantom.image.array
    for index, tumor_type in enumerate(types):
        for seed in range(2):
            out = synthesize(
                image,
                mask,
                spacing=phantom.image.spacing,
                seed=10 * index + seed,
                organ=organ,
                tumor_type=tumor_type,
            )
            tumor = out.label == 2
            assert tumor.any(), (tumor_type, seed)
            assert not (tumor & ~mask).any()
            assert np.array_equal(out.label >= 1, mask)
            assert np.array_equal(out.image[~mask], image[~mask])
            if tumor_type != "cyst":  # solid tumors are hypo-attenuating
                assert np.median((image - out.image)[tumor]) > 5.0


@pytest.mark.parametrize("mask_name", list(ORGANS))
def test_cysts_have_water_density(phantom, mask_name):
    organ, _ = ORGANS[mask_name]
    mask = phantom.organ_mask(mask_name)
    medians = []
    for seed in range(6):
        out = synthesize(
            phantom.image.array,
            mask,
            spacing=phantom.image.spacing,
            seed=seed,
            organ=organ,
            tumor_type="cyst",
        )
        cyst = out.label == 2
        core = ndimage.binary_erosion(cyst)
        if core.sum() < 5:  # at 2.5 mm a 5 mm cyst may have no interior voxel
            core = cyst
        medians.append(float(np.median(out.image[core])))
    assert all(-10.0 <= m <= 35.0 for m in medians), medians


def test_mass_effect_interpolation_split_over_threads_is_identical():
    """Many points are interpolated by two threads; each value must be scipy's own."""
    from syntumor_core.synthesis.effects import _PARALLEL_POINTS, _linear_at

    rng = np.random.default_rng(0)
    volume = rng.normal(size=(40, 30, 20)).astype(np.float32)
    for count in (_PARALLEL_POINTS - 1, _PARALLEL_POINTS + 1):
        points = rng.random((3, count)) * np.array([[45.0], [35.0], [25.0]]) - 2.0
        points = points.astype(np.float32)  # some beyond the edge: mode "nearest"
        expected = ndimage.map_coordinates(volume, points, order=1, mode="nearest", prefilter=False)
        assert np.array_equal(_linear_at(volume, points), expected)
