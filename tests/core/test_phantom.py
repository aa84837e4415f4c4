"""Tests of the procedural abdominal CT phantoms (syntumor_core.phantom)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from syntumor_core.errors import ParameterError
from syntumor_core.phantom import LABELS, Phantom, make_phantom

SMALL_SHAPE = (64, 64, 32)
SMALL_SPACING = (6.0, 6.0, 6.0)


@pytest.fixture(scope="module")
def default_phantom() -> Phantom:
    """The default phantom (256×256×120 at 1.5 mm), built once for the module."""
    return make_phantom(seed=0)


def world_coordinates(phantom: Phantom, mask: np.ndarray) -> np.ndarray:
    """World (RAS+, mm) coordinates of the voxels of ``mask``, shape (N, 3)."""
    affine = phantom.image.affine
    return np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]


def column_profile(phantom: Phantom, x_mm: float, z_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """HU along y (posterior → anterior) through the body at world x and z, and the world y.

    Only the longest run of non-air voxels is kept (the body, not the table under it).
    """
    affine = phantom.image.affine
    i = int(round((x_mm - affine[0, 3]) / affine[0, 0]))
    k = int(round((z_mm - affine[2, 3]) / affine[2, 2]))
    profile = phantom.image.array[i, :, k]
    y = affine[1, 3] + affine[1, 1] * np.arange(len(profile))
    runs, count = ndimage.label(profile > -500)
    body = runs == 1 + np.argmax(np.bincount(runs.ravel())[1:])
    assert count >= 1
    return profile[body], y[body]


@pytest.fixture(scope="module")
def small_phantom() -> Phantom:
    return make_phantom(3, SMALL_SHAPE, SMALL_SPACING)


def test_same_seed_gives_identical_arrays(small_phantom):
    again = make_phantom(3, SMALL_SHAPE, SMALL_SPACING)
    np.testing.assert_array_equal(small_phantom.image.array, again.image.array)
    np.testing.assert_array_equal(small_phantom.labels.array, again.labels.array)
    np.testing.assert_array_equal(small_phantom.vessels, again.vessels)
    assert small_phantom.seed == again.seed == 3


def test_different_seed_gives_different_anatomy(small_phantom):
    other = make_phantom(4, SMALL_SHAPE, SMALL_SPACING)
    assert not np.array_equal(small_phantom.labels.array, other.labels.array)
    assert np.abs(small_phantom.image.array - other.image.array).mean() > 5.0


def test_shape_dtype_affine_and_ras_orientation():
    shape, spacing = (40, 48, 24), (7.0, 6.0, 8.0)
    phantom = make_phantom(1, shape, spacing)
    assert phantom.image.shape == phantom.labels.shape == phantom.vessels.shape == shape
    assert phantom.image.array.dtype == np.float32
    assert phantom.labels.array.dtype == np.uint8
    assert phantom.vessels.dtype == bool
    np.testing.assert_allclose(phantom.image.spacing, spacing)
    np.testing.assert_array_equal(phantom.image.affine, phantom.labels.affine)
    np.testing.assert_allclose(phantom.image.affine[:3, :3], np.diag(spacing))
    centre = phantom.image.affine @ np.r_[(np.array(shape) - 1) / 2.0, 1.0]
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)  # world origin at the field centre
    assert tuple(nib.aff2axcodes(phantom.image.affine)) == ("R", "A", "S")
    assert phantom.image.axcodes == ("R", "A", "S")


def test_every_organ_is_present_with_its_label_values(default_phantom):
    labels = default_phantom.labels.array
    assert set(np.unique(labels)) == {0, *LABELS.values()}
    for name in LABELS:
        assert default_phantom.organ_mask(name).sum() > 1000, name


@pytest.mark.parametrize(
    ("organ", "low", "high"),
    [("liver", 100, 130), ("spleen", 110, 130), ("pancreas", 90, 110), ("aorta", 150, 200),
     ("ivc", 150, 200)],
)  # fmt: skip
def test_organ_hu_medians_are_in_the_spec_ranges(default_phantom, organ, low, high):
    mask = default_phantom.organ_mask(organ)
    if organ == "liver":
        mask &= ~default_phantom.vessels
    assert low <= np.median(default_phantom.image.array[mask]) <= high


@pytest.mark.parametrize("name", ["kidney_right", "kidney_left"])
def test_kidney_cortex_is_brighter_than_medulla(default_phantom, name):
    image, mask = default_phantom.image.array, default_phantom.organ_mask(name)
    eroded_1 = ndimage.binary_erosion(mask, iterations=1)
    cortex = eroded_1 & ~ndimage.binary_erosion(mask, iterations=2)  # 1.5–3 mm deep
    core = ndimage.binary_erosion(mask, iterations=5) & (image > 50)  # deeper, sinus fat out
    assert 150 <= np.median(image[cortex]) <= 200
    assert 100 <= np.median(image[core]) <= 150
    assert np.median(image[cortex]) > np.median(image[core]) + 15


def test_fat_muscle_and_air_have_their_hu(default_phantom):
    image = default_phantom.image.array
    # Anterior midline: skin, then 1-3 cm of subcutaneous fat.
    profile, y = column_profile(default_phantom, 0.0, 0.0)
    fat = profile[(y < y.max() - 5) & (y > y.max() - 11)]
    assert -120 <= np.median(fat) <= -80
    # Right paraspinal muscle: 25-40 mm in front of the skin of the back.
    profile, y = column_profile(default_phantom, 30.0, 0.0)
    muscle = profile[(y > y.min() + 25) & (y < y.min() + 40)]
    assert 40 <= np.median(muscle) <= 60
    corner = image[2:20, 2:20, 40:80]  # air in front of the right shoulder of the field
    assert abs(np.median(corner) + 1000) < 5


def test_noise_has_the_requested_sd_and_is_slightly_correlated(default_phantom):
    air = default_phantom.image.array[4:34, 4:34, 30:90].astype(np.float64)
    air -= air.mean()
    assert 10 <= air.std() <= 20
    neighbour_correlation = (air[1:] * air[:-1]).mean() / air.var()
    assert 0.1 < neighbour_correlation < 0.8  # not white, not smeared


@pytest.fixture(scope="module")
def quiet_phantom_and_progress() -> tuple[Phantom, list[float]]:
    fractions: list[float] = []
    phantom = make_phantom(2, SMALL_SHAPE, SMALL_SPACING, noise_sd=0.0, progress=fractions.append)
    return phantom, fractions


def test_noise_free_air_is_exact(quiet_phantom_and_progress):
    phantom, _ = quiet_phantom_and_progress
    assert np.all(phantom.image.array[:3, :3] == -1000.0)


def test_progress_is_reported_from_zero_to_one(quiet_phantom_and_progress):
    _, fractions = quiet_phantom_and_progress
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(fractions) >= 3


def test_liver_volume_at_default_size_is_adult(default_phantom):
    millilitres = default_phantom.organ_mask("liver").sum() * np.prod((1.5, 1.5, 1.5)) / 1000
    assert 1200 <= millilitres <= 1800


@pytest.mark.parametrize("seed", [5, 11])
def test_liver_volume_stays_adult_across_seeds(seed):
    phantom = make_phantom(seed, (96, 96, 48), (4.0, 4.0, 4.0))
    millilitres = phantom.organ_mask("liver").sum() * 64 / 1000
    assert 1200 <= millilitres <= 1800


def test_liver_is_not_an_ellipsoid(default_phantom):
    liver = default_phantom.organ_mask("liver")
    points = world_coordinates(default_phantom, liver)
    centre = points.mean(0)
    variances, axes = np.linalg.eigh(np.cov((points - centre).T))
    semi_axes = np.sqrt(5.0 * variances)  # the solid ellipsoid with the same second moments
    inside = (((points - centre) @ axes / semi_axes) ** 2).sum(1) <= 1.0
    ellipsoid_voxels = 4.0 / 3.0 * np.pi * np.prod(semi_axes) / 1.5**3
    dice = 2 * inside.sum() / (ellipsoid_voxels + len(points))
    assert dice < 0.9


def test_liver_lies_on_the_patient_right_and_crosses_the_midline(default_phantom):
    x = world_coordinates(default_phantom, default_phantom.organ_mask("liver"))[:, 0]
    assert np.mean(x > 0) > 0.7  # RAS+: positive x is the patient's right
    assert np.mean(x < -20) > 0.01  # the left lobe crosses the midline
    spleen_x = world_coordinates(default_phantom, default_phantom.organ_mask("spleen"))[:, 0]
    assert spleen_x.mean() < -50


def test_liver_spans_about_fifteen_centimetres_and_is_centred_in_z(default_phantom):
    z = world_coordinates(default_phantom, default_phantom.organ_mask("liver"))[:, 2]
    assert 120 <= z.max() - z.min() <= 180
    assert abs((z.max() + z.min()) / 2) < 15
    assert z.min() > default_phantom.image.affine[2, 3]  # the whole liver is in view


def test_vessels_are_inside_the_liver_and_brighter(default_phantom):
    vessels, liver = default_phantom.vessels, default_phantom.organ_mask("liver")
    assert vessels.sum() > 0.01 * liver.sum()
    assert not np.any(vessels & ~liver)
    image = default_phantom.image.array
    assert np.median(image[vessels]) > np.median(image[liver & ~vessels]) + 30
    # branching trees, not a blob: eroding one voxel breaks them into many pieces
    _, pieces = ndimage.label(ndimage.binary_erosion(vessels))
    assert pieces >= 5


def test_retroperitoneal_order_pancreas_aorta_spine(default_phantom):
    def centroid_y(mask):
        return world_coordinates(default_phantom, mask)[:, 1].mean()

    pancreas_y = centroid_y(default_phantom.organ_mask("pancreas"))
    aorta_y = centroid_y(default_phantom.organ_mask("aorta"))
    affine = default_phantom.image.affine
    midline = np.abs(affine[0, 3] + affine[0, 0] * np.arange(default_phantom.image.shape[0]))
    bone = (default_phantom.image.array > 400) & (midline < 12)[:, None, None]
    spine_y = centroid_y(bone)
    assert pancreas_y > aorta_y > spine_y  # +y is anterior
    aorta_x = world_coordinates(default_phantom, default_phantom.organ_mask("aorta"))[:, 0]
    assert aorta_x.mean() < 0  # left of the midline


def test_anatomy_does_not_depend_on_the_grid(default_phantom):
    coarse = make_phantom(0, (192, 192, 90), (2.0, 2.0, 2.0))  # same field of view in mm
    fine_ml = default_phantom.organ_mask("liver").sum() * 1.5**3 / 1000
    coarse_ml = coarse.organ_mask("liver").sum() * 2.0**3 / 1000
    assert abs(coarse_ml - fine_ml) / fine_ml < 0.05
    for name in ("liver", "spleen", "kidney_left"):
        fine_centre = world_coordinates(default_phantom, default_phantom.organ_mask(name))
        coarse_centre = world_coordinates(coarse, coarse.organ_mask(name))
        np.testing.assert_allclose(fine_centre.mean(0), coarse_centre.mean(0), atol=2.0)


@settings(max_examples=5, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    shape=st.tuples(*[st.integers(16, 28)] * 3),
    spacing=st.tuples(*[st.floats(5.0, 10.0)] * 3),
)
def test_invariants_hold_on_any_small_grid(seed, shape, spacing):
    phantom = make_phantom(seed, shape, spacing)
    image, labels = phantom.image.array, phantom.labels.array
    assert image.shape == labels.shape == shape
    assert np.isfinite(image).all() and -1300 < image.min() and image.max() < 1500
    assert set(np.unique(labels)) <= {0, *LABELS.values()}
    assert not np.any(phantom.vessels & (labels != LABELS["liver"]))
    assert phantom.organ_mask("liver").any() and phantom.organ_mask("aorta").any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (64, 64)}, "3 values"),
        ({"spacing": (1.5, 0.0, 1.5)}, "spacing must be"),
        ({"spacing": (1.5, -1.0, 1.5)}, "spacing must be"),
        ({"spacing": (1.5, float("nan"), 1.5)}, "spacing must be"),
        ({"shape": (4, 64, 64)}, "shape must be"),
        ({"shape": "abc"}, "shape"),
        ({"seed": -1}, "seed must be"),
        ({"seed": 1.5}, "seed must be"),
        ({"noise_sd": -3.0}, "noise_sd must be"),
    ],
)
def test_bad_arguments_raise_parameter_error(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        make_phantom(**kwargs)


def test_error_messages_name_the_bad_value():
    with pytest.raises(ParameterError, match=r"got \(1\.5, 0\.0, 1\.5\)"):
        make_phantom(spacing=(1.5, 0.0, 1.5))


def test_unknown_organ_name_is_refused(small_phantom):
    with pytest.raises(ParameterError, match="unknown organ 'livre'"):
        small_phantom.organ_mask("livre")


@pytest.mark.slow
def test_large_field_holds_about_1_3_litres_of_liver():
    phantom = make_phantom(0, (512, 512, 100), (1.0, 1.0, 1.0))
    millilitres = phantom.organ_mask("liver").sum() / 1000
    assert 1200 <= millilitres <= 1400


def test_package_exports_its_public_names():
    """The phantom is a package of modules; its public names stay importable from the top."""
    import syntumor_core.phantom as package
    from syntumor_core.phantom import TISSUE_HU
    from syntumor_core.phantom.build import make_phantom as built

    assert set(package.__all__) == {"LABELS", "TISSUE_HU", "Phantom", "make_phantom"}
    assert package.make_phantom is built is make_phantom
    assert set(LABELS.values()) == set(range(1, 8))
    assert TISSUE_HU["liver"] == 115.0 and TISSUE_HU["air"] == -1000.0
