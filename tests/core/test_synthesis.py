"""synthesize / replay: the paper profile's guarantees, manifests, and errors that explain.

Guarantees checked (shared/spec/synthesis.md): nothing outside the organ changes, labels are
0/1/2 with the tumor inside the organ, inputs are never written, the tumor is hypodense by
about texture · difference, a manifest replays bit for bit (also through a JSON file) and
refuses other inputs, and bad input raises a typed error that names the problem.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from syntumor_core.errors import (
    ManifestError,
    MaskError,
    OrganTooSmallError,
    ParameterError,
    VolumeError,
)
from syntumor_core.synthesis import (
    get_organ_profile,
    load_manifest,
    replay,
    save_manifest,
    synthesize,
)


def _copies(case):
    return case.image.copy(), case.mask.copy()


def _assert_paper_invariants(image, mask, out) -> None:
    """The paper profile's promises about ``out`` made from ``image`` and ``mask``."""
    assert out.image.dtype == np.float32 and out.image.shape == image.shape
    assert out.label.dtype == np.uint8 and out.label.shape == image.shape
    reference = image.astype(np.float32)
    assert np.array_equal(out.image[~mask], reference[~mask]), "a voxel outside the organ changed"
    assert set(np.unique(out.label).tolist()) <= {0, 1, 2}
    tumor = out.label == 2
    assert not (tumor & ~mask).any(), "tumor outside the organ"
    assert np.array_equal(out.label >= 1, mask), "label 1|2 is not the organ mask"
    # Hypodense: the paper profile only ever darkens.
    assert (out.image <= reference).all()
    box = out.result.changed_box
    if tumor.any():
        assert set(np.unique(out.label).tolist()) == {0, 1, 2}
        outside = np.ones(image.shape, dtype=bool)
        outside[box] = False
        assert np.array_equal(out.image[outside], reference[outside])
        assert out.result.tumor_voxels == int(tumor.sum())


@pytest.mark.parametrize("tumor_type", ["tiny", "small", "medium", "mix"])
def test_paper_profile_keeps_its_promises(small_liver, tumor_type):
    image_before, mask_before = _copies(small_liver)
    for seed in range(3):
        out = synthesize(
            small_liver.image,
            small_liver.mask,
            spacing=small_liver.spacing,
            seed=seed,
            tumor_type=tumor_type,
        )
        _assert_paper_invariants(small_liver.image, small_liver.mask, out)
        assert (out.label == 2).any()
        assert out.params.tumor_type == tumor_type and out.params.profile == "paper"
    assert np.array_equal(small_liver.image, image_before)
    assert np.array_equal(small_liver.mask, mask_before)


def test_large_tumors_keep_the_promises(big_liver):
    out = synthesize(
        big_liver.image, big_liver.mask, spacing=big_liver.spacing, seed=4, tumor_type="large"
    )
    _assert_paper_invariants(big_liver.image, big_liver.mask, out)
    assert (out.label == 2).sum() * 8.0 > 4.0 / 3.0 * np.pi * 24**3 * 0.5


def test_inputs_are_never_written(small_liver):
    """Writable inputs come back unchanged (read-only fixtures already fail on any write)."""
    image, mask = _copies(small_liver)
    image_before, mask_before = image.copy(), mask.copy()
    out = synthesize(image, mask, spacing=small_liver.spacing, seed=1, tumor_type="small")
    assert np.array_equal(image, image_before) and np.array_equal(mask, mask_before)
    assert not np.shares_memory(out.image, image)
    out.image[...] = 0  # the result is the caller's to modify
    assert np.array_equal(image, image_before)


def test_out_receives_the_same_result_and_can_be_reused(small_liver):
    """``out=`` gives the very arrays of a new-array call, for synthesize and replay alike,
    and one buffer serves many calls (each overwrites all of it)."""
    image = small_liver.image.astype(np.float32)
    buffer = np.full(image.shape, np.nan, dtype=np.float32)
    for seed, tumor_type in ((1, "small"), (2, "tiny"), (3, "mix")):
        fresh = synthesize(image, small_liver.mask, spacing=small_liver.spacing, seed=seed,
                           tumor_type=tumor_type)  # fmt: skip
        into = synthesize(image, small_liver.mask, spacing=small_liver.spacing, seed=seed,
                          tumor_type=tumor_type, out=buffer)  # fmt: skip
        assert into.image is buffer
        assert np.array_equal(into.image, fresh.image) and np.array_equal(into.label, fresh.label)
    replayed = replay(fresh.manifest, image, small_liver.mask, out=buffer)
    assert replayed.image is buffer and np.array_equal(buffer, fresh.image)


def test_out_is_checked_before_anything_is_written(small_liver):
    image = small_liver.image.astype(np.float32)
    kwargs = {"spacing": small_liver.spacing, "seed": 1, "tumor_type": "small"}
    before = image.copy()
    read_only = np.zeros_like(image)
    read_only.flags.writeable = False
    cases = {
        "shares memory with the image": image,
        "shares memory with the image ": image[...],
        "float32 with the image's shape": np.zeros(image.shape, dtype=np.float64),
        "float32 with the image's shape ": np.zeros((4, 4, 4), dtype=np.float32),
        "read-only": read_only,
        "must be a numpy array": [0.0],
    }
    for message, out in cases.items():
        with pytest.raises(ParameterError, match=message.strip()):
            synthesize(image, small_liver.mask, out=out, **kwargs)
    assert np.array_equal(image, before)


def test_tumor_is_darker_by_about_texture_times_difference(small_liver):
    """In the tumor's core the drop is texture · difference, the texture averaging ~0.53."""
    for seed in range(4):
        out = synthesize(
            small_liver.image,
            small_liver.mask,
            spacing=small_liver.spacing,
            seed=seed,
            tumor_type="medium",
        )
        core = ndimage.binary_erosion(out.label == 2, iterations=2)
        drop = np.median((small_liver.image - out.image)[core])
        assert 0.35 < drop / out.params.blend.difference_hu < 0.65, (seed, drop)
        # Every core voxel is darker: its blurred mask is near 1, its texture at least ~0.2.
        assert ((small_liver.image - out.image)[core] > 5.0).all(), seed


def test_other_dtypes_and_axes(small_liver):
    """int16 image, 0/1 uint8 mask, and the axial axis first."""
    image = np.round(small_liver.image).astype(np.int16)
    mask = small_liver.mask.astype(np.uint8)
    out = synthesize(image, mask, spacing=small_liver.spacing, seed=2, tumor_type="small")
    _assert_paper_invariants(image, small_liver.mask, out)
    assert out.image.dtype == np.float32

    moved_image = np.moveaxis(small_liver.image, 2, 0)
    moved_mask = np.moveaxis(small_liver.mask, 2, 0)
    spacing = (0.9, 1.2, 1.4)
    out = synthesize(moved_image, moved_mask, spacing=spacing, seed=3, axial_axis=0)
    _assert_paper_invariants(moved_image, moved_mask, out)
    assert out.params.axial_axis == 0
    axial = np.flatnonzero(moved_mask.any(axis=(1, 2)))
    for ellipsoid in out.params.ellipsoids:
        fraction = (ellipsoid.centre[0] - axial[0]) / (axial[-1] - axial[0])
        assert 0.3 - 0.02 <= fraction <= 0.7 + 0.02


def test_global_random_state_is_neither_used_nor_changed(small_liver):
    def run():
        return synthesize(
            small_liver.image,
            small_liver.mask,
            spacing=small_liver.spacing,
            seed=9,
            tumor_type="tiny",
        )

    saved = np.random.get_state()
    try:
        np.random.seed(1)
        before = np.random.get_state()
        first = run()
        after = np.random.get_state()
        assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]
        np.random.seed(2)
        second = run()
    finally:
        np.random.set_state(saved)
    assert np.array_equal(first.image, second.image)


# --- manifests and replay ---------------------------------------------------------------------


def test_same_seed_same_result_and_other_seeds_differ(small_liver):
    def run(**kwargs):
        return synthesize(
            small_liver.image,
            small_liver.mask,
            spacing=small_liver.spacing,
            tumor_type="small",
            **kwargs,
        )

    first, again = run(seed=11), run(seed=11)
    from_rng = run(rng=np.random.default_rng(11))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.label, again.label)
    assert np.array_equal(first.image, from_rng.image)
    assert first.params == again.params
    others = [run(seed=s) for s in (12, 13)]
    for other in others:
        assert not np.array_equal(first.label, other.label)
        assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize(
    ("organ", "tumor_type", "profile"),
    [("liver", "mix", "paper"), ("liver", "small", "realistic"), ("pancreas", "cyst", "paper")],
)
def test_manifest_replays_bit_for_bit_also_through_a_json_file(
    small_liver, tmp_path, organ, tumor_type, profile
):
    out = synthesize(
        small_liver.image,
        small_liver.mask,
        spacing=small_liver.spacing,
        seed=21,
        organ=organ,
        tumor_type=tumor_type,
        profile=profile,
    )
    manifest = out.manifest
    assert manifest["seed"] == 21 and manifest["profile"] == profile
    assert manifest["tumor_type"] == tumor_type and manifest["organ"] == organ
    assert manifest["shape"] == list(small_liver.image.shape)
    assert manifest["spacing_mm"] == list(small_liver.spacing)
    assert manifest["input"]["image_sha256"] and manifest["input"]["mask_sha256"]
    assert manifest["syntumor_version"]
    json.dumps(manifest)  # JSON-ready

    again = replay(manifest, small_liver.image, small_liver.mask)
    assert again.image.tobytes() == out.image.tobytes()
    assert np.array_equal(again.label, out.label)

    path = save_manifest(manifest, tmp_path / "case.json")
    loaded = load_manifest(path)
    from_file = replay(loaded, small_liver.image, small_liver.mask)
    assert from_file.image.tobytes() == out.image.tobytes()
    assert np.array_equal(from_file.label, out.label)
    assert from_file.params == out.params


def test_custom_profile_travels_in_the_manifest(small_liver, tmp_path):
    liver = get_organ_profile("liver")
    stronger = dataclasses.replace(
        liver,
        types={
            **liver.types,
            "small": dataclasses.replace(
                liver.types["small"],
                appearance=dataclasses.replace(
                    liver.types["small"].appearance, difference_hu=(200.0, 210.0)
                ),
            ),
        },
    )
    out = synthesize(
        small_liver.image,
        small_liver.mask,
        spacing=small_liver.spacing,
        seed=5,
        tumor_type="small",
        organ_profile=stronger,
    )
    assert 200.0 <= out.params.blend.difference_hu <= 210.0
    loaded = load_manifest(save_manifest(out.manifest, tmp_path / "m.json"))
    again = replay(loaded, small_liver.image, small_liver.mask)
    assert np.array_equal(again.image, out.image)


def test_manifest_refuses_other_inputs(small_liver):
    out = synthesize(
        small_liver.image, small_liver.mask, spacing=small_liver.spacing, seed=3, tumor_type="tiny"
    )
    image, mask = _copies(small_liver)
    inside = tuple(int(i[0]) for i in np.nonzero(mask))
    image[inside] += 1.0
    with pytest.raises(ManifestError, match=r"image differs.*sha256"):
        replay(out.manifest, image, small_liver.mask)
    mask[inside] = False
    with pytest.raises(ManifestError, match=r"mask differs.*sha256"):
        replay(out.manifest, small_liver.image, mask)
    with pytest.raises(ManifestError, match="shape"):
        replay(out.manifest, small_liver.image[:-1], small_liver.mask[:-1])
    with pytest.raises(ManifestError, match="not a SynTumor synthesis manifest"):
        replay({"kind": "other"}, small_liver.image, small_liver.mask)
    broken = {**out.manifest, "params": {"organ": "liver"}}
    with pytest.raises(ManifestError, match="malformed"):
        replay(broken, small_liver.image, small_liver.mask)
    # Format 1 rendered with other arithmetic: refused rather than replayed differently.
    older = {**out.manifest, "format": 1}
    with pytest.raises(ManifestError, match=r"unsupported manifest format 1; this version reads 2"):
        replay(older, small_liver.image, small_liver.mask)


def test_manifest_without_checksums_replays_without_checking(small_liver):
    out = synthesize(
        small_liver.image,
        small_liver.mask,
        spacing=small_liver.spacing,
        seed=3,
        tumor_type="tiny",
        checksums=False,
    )
    assert out.manifest["input"] == {"image_sha256": None, "mask_sha256": None}
    again = replay(out.manifest, small_liver.image, small_liver.mask)
    assert np.array_equal(again.image, out.image)


def test_load_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bad)


# --- errors ----------------------------------------------------------------------------------


def _ball(radius_mm: float, spacing=1.0, size=48) -> np.ndarray:
    x, y, z = np.ogrid[:size, :size, :size]
    c = (size - 1) / 2.0
    return ((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2) * spacing**2 <= radius_mm**2


def test_input_errors_name_the_problem(small_liver):
    image, mask, spacing = small_liver.image, small_liver.mask, small_liver.spacing
    with pytest.raises(MaskError, match="empty"):
        synthesize(image, np.zeros_like(mask), spacing=spacing, seed=0)
    with pytest.raises(MaskError, match=r"shape \(96, 96, 63\) does not match image shape"):
        synthesize(image, mask[:, :, :-1], spacing=spacing, seed=0)
    with pytest.raises(VolumeError, match=r"image must be 3-D, got 2-D with shape \(96, 96\)"):
        synthesize(image[:, :, 0], mask[:, :, 0], spacing=spacing, seed=0)
    with pytest.raises(VolumeError, match="image must be 3-D, got 4-D"):
        synthesize(image[None], mask[None], spacing=spacing, seed=0)
    with pytest.raises(MaskError, match="organ mask must be 3-D, got 2-D"):
        synthesize(image, mask[:, :, 0], spacing=spacing, seed=0)
    with pytest.raises(MaskError, match="organ mask must be 3-D, got 4-D"):
        synthesize(image, mask[None], spacing=spacing, seed=0)
    with pytest.raises(ParameterError, match="spacing"):
        synthesize(image, mask, spacing=(1.0, 1.0), seed=0)
    with pytest.raises(ParameterError, match="spacing"):
        synthesize(image, mask, spacing=(1.0, -1.0, 1.0), seed=0)
    with pytest.raises(ParameterError, match="axial_axis"):
        synthesize(image, mask, spacing=spacing, seed=0, axial_axis=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_inside_the_organ_box_are_refused(small_liver, bad):
    image = small_liver.image.copy()
    inside = tuple(int(i[len(i) // 2]) for i in np.nonzero(small_liver.mask))
    image[inside] = bad
    with pytest.raises(VolumeError, match="NaN or infinite"):
        synthesize(image, small_liver.mask, spacing=small_liver.spacing, seed=0)


def test_non_finite_values_outside_the_organ_box_are_kept(small_liver):
    image = small_liver.image.copy()
    image[0, 0, 0] = np.nan
    out = synthesize(
        image, small_liver.mask, spacing=small_liver.spacing, seed=0, tumor_type="tiny"
    )
    assert np.isnan(out.image[0, 0, 0])
    assert np.array_equal(out.image[~small_liver.mask], image[~small_liver.mask], equal_nan=True)


def test_organ_too_small_for_the_type():
    image = np.full((48, 48, 48), 110.0, dtype=np.float32)
    ball = _ball(10.0)  # a 20 mm ball
    with pytest.raises(OrganTooSmallError, match=r"too small for tumor type 'large'.*24 mm"):
        synthesize(image, ball, spacing=(1.0, 1.0, 1.0), seed=0, tumor_type="large")
    # Large enough by volume, but a 3 mm sheet has nothing left after the 5 mm erosion.
    sheet = np.zeros((48, 48, 48), dtype=bool)
    sheet[22:25, 4:44, 4:44] = True
    with pytest.raises(OrganTooSmallError, match=r"organ too small for a tiny tumor.*erosion"):
        synthesize(image, sheet, spacing=(1.0, 1.0, 1.0), seed=0, tumor_type="tiny")
    # The same ball is fine for tiny tumors.
    out = synthesize(image, ball, spacing=(1.0, 1.0, 1.0), seed=0, tumor_type="tiny")
    assert (out.label == 2).any()


def test_unknown_names_get_a_did_you_mean(small_liver):
    args = (small_liver.image, small_liver.mask)
    spacing = small_liver.spacing
    with pytest.raises(ParameterError, match=r"unknown organ 'livr'.*did you mean 'liver'"):
        synthesize(*args, spacing=spacing, seed=0, organ="livr")
    with pytest.raises(ParameterError, match=r"unknown tumor type 'smal'.*did you mean 'small'"):
        synthesize(*args, spacing=spacing, seed=0, tumor_type="smal")
    with pytest.raises(
        ParameterError, match=r"unknown profile 'realstic'.*did you mean 'realistic'"
    ):
        synthesize(*args, spacing=spacing, seed=0, profile="realstic")
    with pytest.raises(ParameterError, match=r"unknown tumor type 'cyst' for organ 'liver'"):
        synthesize(*args, spacing=spacing, seed=0, tumor_type="cyst")


def test_randomness_must_be_given_exactly_once(small_liver):
    args = (small_liver.image, small_liver.mask)
    with pytest.raises(ParameterError, match="either `rng` or `seed`, not both"):
        synthesize(*args, spacing=small_liver.spacing, seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ParameterError, match=r"pass `rng`.*or an integer `seed`"):
        synthesize(*args, spacing=small_liver.spacing)
    with pytest.raises(ParameterError, match="numpy.random.Generator"):
        synthesize(*args, spacing=small_liver.spacing, rng=np.random.RandomState(1))


# --- property test ---------------------------------------------------------------------------


@st.composite
def organ_cases(draw):
    spacing = tuple(draw(st.floats(0.8, 2.5)) for _ in range(3))
    semi_axes = tuple(draw(st.floats(10.0, 22.0)) for _ in range(3))
    shape = tuple(
        int(np.ceil(2 * a / s)) + draw(st.integers(2, 8))
        for a, s in zip(semi_axes, spacing, strict=True)
    )
    centre = [(n - 1) / 2.0 + draw(st.floats(-1.0, 1.0)) for n in shape]
    axes = [
        ((np.arange(n) - c) * s / a) ** 2
        for n, c, s, a in zip(shape, centre, spacing, semi_axes, strict=True)
    ]
    mask = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :] <= 1.0
    seed = draw(st.integers(0, 2**31 - 1))
    noise = np.random.default_rng(seed).normal(0.0, 15.0, shape).astype(np.float32)
    image = np.where(mask, 110.0, 40.0).astype(np.float32) + noise
    return image, mask, spacing, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=organ_cases(),
    tumor_type=st.sampled_from(["tiny", "small"]),
    axial_axis=st.integers(0, 2),
)
def test_property_tumor_inside_organ_and_nothing_outside_changes(case, tumor_type, axial_axis):
    image, mask, spacing, seed = case
    image.flags.writeable = False
    mask.flags.writeable = False
    out = synthesize(
        image, mask, spacing=spacing, seed=seed, tumor_type=tumor_type, axial_axis=axial_axis
    )
    _assert_paper_invariants(image, mask, out)
    assert (out.label == 2).any()


def test_checksums_can_be_skipped_and_are_computed_lazily(small_liver):
    args = (small_liver.image, small_liver.mask)
    fast = synthesize(
        *args, spacing=small_liver.spacing, seed=5, tumor_type="small", checksums=False
    )
    assert fast.manifest["input"]["image_sha256"] is None
    assert np.array_equal(replay(fast.manifest, *args).image, fast.image)
    lazy = synthesize(*args, spacing=small_liver.spacing, seed=5, tumor_type="small")
    assert "manifest" not in vars(lazy)  # nothing hashed until the manifest is read
    assert len(lazy.manifest["input"]["image_sha256"]) == 64
