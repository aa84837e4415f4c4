"""Every profile stays inside the organ it is given (issue 16, item 2).

For every profile (``paper``, ``realistic``) and organ profile (liver, pancreas, kidney), over
many seeds, on synthetic organs (hypothesis), on the phantom and on the real LiTS case 117
(its tumors, label 2, as the ``protect`` mask):

* no voxel outside the organ mask changes, and no protected voxel changes;
* the tumor label lies inside the organ mask and off protected voxels;
* the organ label (1 or 2) is exactly the given mask: it never grows or shrinks.

Also: ``realistic`` removes fragments smaller than its minimum (``paper`` keeps them unless
asked), and the protect mask travels through replay.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from syntumor_core.errors import ManifestError
from syntumor_core.synthesis import replay, synthesize

PROFILES = ("paper", "realistic")
STRUCTURE = np.ones((3, 3, 3), dtype=bool)


def assert_confined(image, mask, protect, out) -> None:
    """The confinement promises of ``out`` made from ``image`` in ``mask``, off ``protect``."""
    reference = np.asarray(image, dtype=np.float32)
    fixed = ~mask if protect is None else ~mask | protect
    changed = out.image != reference
    assert not (changed & fixed).any(), (
        f"{int((changed & ~mask).sum())} voxels changed outside the organ, "
        f"{int((changed & fixed & mask).sum())} protected voxels changed"
    )
    tumor = out.label == 2
    assert not (tumor & ~mask).any(), "tumor label outside the organ"
    if protect is not None:
        assert not (tumor & protect).any(), "tumor label on a protected voxel"
    assert np.array_equal(out.label >= 1, mask), "the organ label is not the given mask"


# --- synthetic organs (hypothesis) -----------------------------------------------------------


@st.composite
def protected_cases(draw):
    spacing = tuple(draw(st.floats(0.9, 2.5)) for _ in range(3))
    semi_axes = tuple(draw(st.floats(22.0, 34.0)) for _ in range(3))
    shape = tuple(
        int(np.ceil(2 * a / s)) + draw(st.integers(2, 6))
        for a, s in zip(semi_axes, spacing, strict=True)
    )
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    axes = [
        ((np.arange(n) - (n - 1) / 2.0) * s / a) ** 2
        for n, s, a in zip(shape, spacing, semi_axes, strict=True)
    ]
    mask = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :] <= 1.0
    # Protected blobs (real lesions, vessels): a few smoothed-noise islands inside and across
    # the organ's edge.
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    protect = field > np.quantile(field, 1.0 - draw(st.floats(0.0, 0.08)))
    image = np.where(mask, 110.0, 40.0).astype(np.float32) + rng.normal(0, 15, shape).astype(
        np.float32
    )
    image[protect] += 60.0
    return image, mask, protect, spacing, seed


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=protected_cases(),
    profile=st.sampled_from(PROFILES),
    tumor_type=st.sampled_from(["tiny", "small", "medium", "mix"]),
    axial_axis=st.integers(0, 2),
)
def test_property_confined_to_the_organ_and_off_protected_voxels(
    case, profile, tumor_type, axial_axis
):
    image, mask, protect, spacing, seed = case
    for array in (image, mask, protect):
        array.flags.writeable = False
    out = synthesize(
        image,
        mask,
        spacing=spacing,
        seed=seed,
        tumor_type=tumor_type,
        profile=profile,
        axial_axis=axial_axis,
        protect=protect,
    )
    assert_confined(image, mask, protect, out)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), tumor_type=st.sampled_from(["medium", "mix"]))
def test_property_realistic_mass_effect_stays_inside(big_liver, seed, tumor_type):
    out = synthesize(
        big_liver.image,
        big_liver.mask,
        spacing=big_liver.spacing,
        seed=seed,
        tumor_type=tumor_type,
        profile="realistic",
    )
    assert_confined(big_liver.image, big_liver.mask, None, out)


# --- the phantom: every organ profile ---------------------------------------------------------

ORGANS = {"liver": (1,), "pancreas": (5,), "kidney": (3, 4)}
TYPES = {
    "liver": ("tiny", "small", "medium", "mix"),
    "pancreas": ("tiny", "small", "medium", "cyst", "mix"),
    "kidney": ("small", "medium", "large", "cyst", "mix"),
}


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("organ", list(ORGANS))
def test_every_organ_and_profile_is_confined_on_the_phantom(phantom, organ, profile):
    labels = np.asarray(phantom.labels.array)
    image = np.asarray(phantom.image.array)
    protect = phantom.vessels  # vessels crossing the organs: never to be touched
    for value in ORGANS[organ]:
        mask = labels == value
        for seed, tumor_type in enumerate(TYPES[organ] * 2):
            kwargs = dict(
                spacing=phantom.image.spacing,
                seed=seed,
                organ=organ,
                tumor_type=tumor_type,
                profile=profile,
                checksums=False,
            )
            out = synthesize(image, mask, **kwargs)
            assert_confined(image, mask, None, out)
            guarded = synthesize(image, mask, protect=protect, **kwargs)
            assert_confined(image, mask, protect, guarded)


# --- the real case: LiTS-117, its real tumors protected ---------------------------------------


@pytest.fixture(scope="module")
def lits117():
    from syntumor_core.errors import SampleNotInstalledError
    from syntumor_core.samples import load_lits117

    try:
        sample = load_lits117()
    except SampleNotInstalledError as error:
        pytest.skip(str(error))
    labels = np.asarray(sample.labels.array)
    return (
        np.asarray(sample.image.array, np.float32),
        labels == 1,
        labels == 2,
        sample.image.spacing,
    )


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("tumor_type", ["tiny", "small", "medium", "large", "mix"])
def test_real_case_with_its_tumors_protected(lits117, profile, tumor_type):
    image, liver, tumors, spacing = lits117
    for seed in range(6):
        out = synthesize(
            image,
            liver,
            spacing=spacing,
            seed=seed,
            tumor_type=tumor_type,
            profile=profile,
            protect=tumors,
            checksums=False,
        )
        assert_confined(image, liver, tumors, out)
        assert (out.label == 2).any()


def test_real_case_other_organ_profiles_are_confined(lits117):
    """The pancreas and kidney profiles inside the real liver mask (their tissue rules
    included): still nothing outside the mask or on the real tumors."""
    image, liver, tumors, spacing = lits117
    for organ, tumor_type in (("pancreas", "mix"), ("kidney", "mix"), ("kidney", "cyst")):
        for profile in PROFILES:
            out = synthesize(
                image,
                liver,
                spacing=spacing,
                seed=3,
                organ=organ,
                tumor_type=tumor_type,
                profile=profile,
                protect=tumors,
                checksums=False,
            )
            assert_confined(image, liver, tumors, out)


# --- fragments and replay ----------------------------------------------------------------------


def _smallest_part(label) -> int:
    parts, count = ndimage.label(label == 2, STRUCTURE)
    return int(np.bincount(parts.ravel())[1:].min()) if count else 0


def test_realistic_removes_small_fragments_and_paper_keeps_them_unless_asked(small_liver):
    args = (small_liver.image, small_liver.mask)
    smallest = {"paper": [], "realistic": [], "paper+min": []}
    for seed in range(12):
        kwargs = dict(spacing=small_liver.spacing, seed=seed, tumor_type="medium")
        smallest["paper"].append(_smallest_part(synthesize(*args, **kwargs).label))
        realistic = synthesize(*args, profile="realistic", **kwargs)
        assert realistic.params.min_fragment_voxels == 8
        smallest["realistic"].append(_smallest_part(realistic.label))
        asked = synthesize(*args, min_fragment_voxels=8, **kwargs)
        smallest["paper+min"].append(_smallest_part(asked.label))
        assert replay(asked.manifest, *args).label.tolist() == asked.label.tolist()
    assert min(smallest["realistic"]) >= 8 and min(smallest["paper+min"]) >= 8
    assert min(smallest["paper"]) < 8, "no seed left a fragment: the test shows nothing"


def test_fragment_removal_leaves_no_paint_behind(small_liver):
    """A removed fragment is gone from the image too: only the blur's halo of the kept
    tumor may darken the voxels it covered."""
    args = (small_liver.image, small_liver.mask)
    for seed in range(12):
        kwargs = dict(spacing=small_liver.spacing, seed=seed, tumor_type="medium")
        kept = synthesize(*args, **kwargs)
        pruned = synthesize(*args, min_fragment_voxels=8, **kwargs)
        removed = (kept.label == 2) & (pruned.label != 2)
        if removed.any():
            assert (pruned.image[removed] >= kept.image[removed] - 1e-3).all()
            assert pruned.image[removed].mean() > kept.image[removed].mean() + 5.0
            return
    pytest.fail("no seed left a fragment to remove")


def test_protect_travels_through_replay(small_liver):
    image, mask = small_liver.image, small_liver.mask
    protect = np.zeros_like(mask)
    protect[40:56, 40:56, 24:40] = True
    out = synthesize(
        image, mask, spacing=small_liver.spacing, seed=2, tumor_type="small", protect=protect
    )
    assert out.manifest["input"]["protect_mask_sha256"]
    again = replay(out.manifest, image, mask, protect=protect)
    assert np.array_equal(again.image, out.image) and np.array_equal(again.label, out.label)
    with pytest.raises(ManifestError, match="protect mask"):
        replay(out.manifest, image, mask)
    with pytest.raises(ManifestError, match="protect mask differs"):
        replay(out.manifest, image, mask, protect=np.zeros_like(protect))


@pytest.mark.parametrize("organ, value", [("liver", 1), ("kidney", 3), ("pancreas", 5)])
def test_realistic_replays_through_json_with_protect(phantom, organ, value):
    """Every drawn number of the calibrated profile (drop, rim, grain, blur) and the organ
    profile's new fields survive a JSON round trip: the replay is bit for bit."""
    import json

    image = np.asarray(phantom.image.array, dtype=np.float32)
    mask = np.asarray(phantom.labels.array) == value
    out = synthesize(
        image,
        mask,
        spacing=phantom.image.spacing,
        seed=1,
        organ=organ,
        tumor_type="mix",
        profile="realistic",
        protect=phantom.vessels,
    )
    manifest = json.loads(json.dumps(out.manifest))
    again = replay(manifest, image, mask, protect=phantom.vessels)
    assert np.array_equal(again.image, out.image) and np.array_equal(again.label, out.label)
