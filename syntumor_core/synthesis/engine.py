"""The public entry points: :func:`synthesize` and :func:`replay`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from syntumor_core.errors import ManifestError, ParameterError
from syntumor_core.synthesis import separable
from syntumor_core.synthesis.config import OrganProfile, check_profile_name
from syntumor_core.synthesis.effects import VesselDetector
from syntumor_core.synthesis.inputs import (
    check_axial_axis,
    check_finite,
    check_image,
    check_mask,
    check_spacing,
    row_ordered,
)
from syntumor_core.synthesis.manifest import array_checksum, build_manifest, check_manifest
from syntumor_core.synthesis.organs import get_organ_profile
from syntumor_core.synthesis.output import OutputCopy, check_out
from syntumor_core.synthesis.params import SynthesisParams
from syntumor_core.synthesis.placement import OrganGeometry, organ_geometry
from syntumor_core.synthesis.render import SynthesisResult, render_synthesis
from syntumor_core.synthesis.sampling import check_room, sample_synthesis


@dataclasses.dataclass(frozen=True, eq=False)
class Synthesis:
    """A result and its manifest.

    The manifest (the drawn parameters as JSON-ready data, and sha256 checksums of image, mask
    and any vessel mask; about 0.1 s for a 512×512×100 volume) is built the first time
    ``manifest`` is read, so training loops that never look at it do not pay for it. Read it
    before changing the input arrays.
    """

    result: SynthesisResult
    build_record: Callable[[], dict]
    inputs: tuple[np.ndarray | None, ...] = ()

    @functools.cached_property
    def manifest(self) -> dict:
        record = copy.deepcopy(self.build_record())
        if self.inputs:
            image, mask, vessels, protect = self.inputs
            record["input"]["image_sha256"] = array_checksum(image)
            record["input"]["mask_sha256"] = array_checksum(mask)
            if vessels is not None:
                record["input"]["vessel_mask_sha256"] = array_checksum(vessels)
            if protect is not None:
                record["input"]["protect_mask_sha256"] = array_checksum(protect)
        return record

    @property
    def image(self) -> np.ndarray:
        return self.result.image

    @property
    def label(self) -> np.ndarray:
        return self.result.label

    @property
    def params(self) -> SynthesisParams:
        return self.result.params


def _prepare(
    image, organ_mask, spacing, axial_axis, out=None
) -> tuple[np.ndarray, OrganGeometry | None, OutputCopy]:
    """Validated inputs, the organ's geometry, and the output copy (started in the background
    as soon as the arrays are known to be usable, so that it overlaps everything else)."""
    image = check_image(image)
    organ_mask = check_mask(organ_mask, image.shape)
    spacing, axial_axis = check_spacing(spacing), check_axial_axis(axial_axis)
    output = OutputCopy(image, organ_mask, check_out(out, image))
    with _cancelled_on_error(output):
        geometry = organ_geometry(organ_mask, spacing, axial_axis)
        if geometry is not None:
            check_finite(image, geometry.box)
    return image, geometry, output


def _restrict(image, geometry: OrganGeometry, profile: OrganProfile, protect) -> OrganGeometry:
    """The geometry with its domain: the organ minus ``protect`` (a volume mask or None) and,
    when the profile names a tissue range, minus organ voxels outside it."""
    tissue = profile.placement.tissue_hu
    if protect is None and tissue is None:
        return geometry
    domain = geometry.organ.copy()
    local = None
    if protect is not None:
        local = np.array(protect[geometry.box], order="K")
        domain &= ~local
    if tissue is not None:
        region = row_ordered(image[geometry.box])
        smoothed = separable.gaussian_filter(
            region, [1.0 / s for s in geometry.spacing], truncate=2.5
        )
        domain &= (smoothed >= tissue[0]) & (smoothed <= tissue[1])
    return geometry.restricted(domain, local)


@contextlib.contextmanager
def _cancelled_on_error(output: OutputCopy):
    """Stop the background copy when the call fails: its result is never used."""
    try:
        yield
    except BaseException:
        output.cancel()
        raise


def _generator(rng, seed) -> tuple[np.random.Generator, int | None]:
    if rng is not None and seed is not None:
        raise ParameterError("pass either `rng` or `seed`, not both")
    if rng is None:
        if seed is None:
            raise ParameterError(
                "pass `rng` (a numpy Generator) or an integer `seed`: there is no hidden global seed"
            )
        return np.random.default_rng(int(seed)), int(seed)
    if not isinstance(rng, np.random.Generator):
        raise ParameterError(f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng, None


def synthesize(
    image: np.ndarray,
    organ_mask: np.ndarray,
    *,
    spacing,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    organ: str = "liver",
    tumor_type: str = "mix",
    profile: str = "paper",
    axial_axis: int = 2,
    organ_profile: OrganProfile | None = None,
    checksums: bool = True,
    vessel_mask: np.ndarray | None = None,
    protect: np.ndarray | None = None,
    min_fragment_voxels: int | None = None,
    centers=None,
    radius_mm: float | None = None,
    drop_hu: float | None = None,
    out: np.ndarray | None = None,
) -> Synthesis:
    """Synthesize tumors into ``image`` inside ``organ_mask``.

    Args:
        image: 3-D CT in raw HU (not windowed); never modified.
        organ_mask: 3-D mask of the organ (non-zero = organ), same shape; never modified.
        spacing: voxel size in mm per array axis.
        rng: the generator all draws come from; or give ``seed`` instead.
        seed: an integer seed (recorded in the manifest).
        organ: ``"liver"``, ``"pancreas"`` or ``"kidney"`` (ignored when ``organ_profile`` given).
        tumor_type: a type of the organ profile, e.g. ``"tiny"`` or ``"mix"``.
        profile: ``"paper"`` (the released method) or ``"realistic"`` (intensities drawn from
            distributions fitted to real lesions: delivered contrast, enhancing rim, grain; plus
            vessel avoidance, collision and margin checks, a mass effect inside the organ).
            Every profile changes nothing outside ``organ_mask`` and never grows the organ.
        axial_axis: the array axis running inferior–superior.
        organ_profile: a custom profile (see :mod:`syntumor_core.synthesis.organs`).
        vessel_mask: known vessels (profile ``realistic``): a boolean mask of the same shape,
            e.g. a vessel segmentation or a phantom's ``vessels``, added to the vessels found
            by intensity (which misses thin, dim vessel edges). Pass it to :func:`replay` too.
        protect: voxels never to overlap, move or change (e.g. the scan's real lesions or
            vessels): a boolean mask of the image's shape. Tumors are carved out of them (and
            ``realistic`` places tumors away from them), the mass effect neither moves them
            nor samples from them, and their image values stay as they were. Pass it to
            :func:`replay` too.
        min_fragment_voxels: tumor parts (26-connected) smaller than this, left where the
            organ (or vessels, protected voxels) clip a tumor, are removed from image and
            label. ``None``: 8 for ``realistic`` (its spec's ``min_fragment_voxels``), 0 for
            ``paper`` (the published behaviour keeps them).
        centers: put one tumor at each of these (i, j, k) voxel indices of ``image`` instead
            of the type's drawn count and places (its lesion group drawn among the type's). A
            point outside the organ, on protected voxels, or closer to the organ's edge than
            0.8 of the tumor's largest semi-axis is refused (:class:`MaskError`). The centres
            are recorded in the manifest's ellipsoids.
        radius_mm: every tumor's semi-axes in mm (default: drawn from the type's range).
        drop_hu: the tumor's HU drop (``difference_hu`` of the blend) instead of the drawn
            one (``realistic``: the delivered drop over the tumor).
        checksums: record sha256 checksums of the inputs in the manifest (computed when the
            manifest is first read, about 0.1 s for a 512×512×100 volume); with False the
            manifest holds none and replays cannot verify their inputs.
        out: a float32 array of the image's shape that receives the result image instead of
            a new array, e.g. one buffer reused for many syntheses of a scan (it must not
            share memory with ``image``, which is never modified; after an error its
            content is undefined).

    Returns:
        A :class:`Synthesis`: ``image`` (float32), ``label`` (uint8: 0, 1 organ, 2 tumor),
        ``params`` and the JSON-ready ``manifest`` that :func:`replay` turns back into the
        same arrays bit for bit.

    Example:
        >>> from syntumor_core.phantom import make_phantom
        >>> phantom = make_phantom(seed=0)
        >>> out = synthesize(phantom.image.array, phantom.organ_mask("liver"),
        ...                  spacing=phantom.image.spacing, seed=7, tumor_type="small")
        >>> int(out.label.max())
        2
    """
    check_profile_name(profile)
    _check_overrides(radius_mm, drop_hu)
    generator, seed = _generator(rng, seed)
    organ_profile = organ_profile or get_organ_profile(organ)
    image, geometry, output = _prepare(image, organ_mask, spacing, axial_axis, out)
    with _cancelled_on_error(output):
        tumor = organ_profile.tumor_type(tumor_type)
        geometry = check_room(geometry, tumor, organ_profile.organ)
        protected = _known_vessels(protect, image.shape)
        geometry = _restrict(image, geometry, organ_profile, protected)
        vessels = None
        if profile == "realistic":
            vessels = VesselDetector.fit(
                image,
                geometry.organ,
                geometry.box,
                geometry.spacing,
                organ_profile.realistic,
                known=_known_vessels(vessel_mask, image.shape),
            )
        params = sample_synthesis(
            image,
            geometry,
            organ_profile,
            tumor_type=tumor_type,
            realistic=profile == "realistic",
            rng=generator,
            vessels=vessels,
            min_fragment_voxels=min_fragment_voxels,
            centers=centers,
            radius_mm=radius_mm,
            drop_hu=drop_hu,
        )
        result = render_synthesis(
            image, geometry, params, organ_profile, vessels=vessels, output=output
        )
    known = _known_vessels(vessel_mask, image.shape) if profile == "realistic" else None

    def build_record() -> dict:
        record = build_manifest(
            params=params.to_dict(),
            organ_profile=organ_profile.to_dict(),
            spacing=geometry.spacing,  # type: ignore[union-attr]
            shape=image.shape,
            seed=seed,
            image_checksum=None,
            mask_checksum=None,
        )
        if known is not None:
            record["input"]["vessel_mask_sha256"] = "given"
        if protected is not None:
            record["input"]["protect_mask_sha256"] = "given"
        return record

    inputs = (image, geometry.mask, known, protected) if checksums else ()
    return Synthesis(result, build_record, inputs)


RADIUS_RANGE_MM = (1.0, 60.0)
DROP_RANGE_HU = (-200.0, 300.0)  # negative: brighter than the organ (e.g. hyperdense lesions)


def _check_overrides(radius_mm, drop_hu) -> None:
    for name, value, (low, high), unit in (
        ("radius_mm", radius_mm, RADIUS_RANGE_MM, "mm"),
        ("drop_hu", drop_hu, DROP_RANGE_HU, "HU"),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ParameterError(
                f"`{name}` must be a number in [{low:g}, {high:g}] {unit}, got {value!r}"
            )
        if not low <= value <= high:
            raise ParameterError(f"`{name}` must be in [{low:g}, {high:g}] {unit}, got {value:g}")


def _known_vessels(vessel_mask, shape) -> np.ndarray | None:
    if vessel_mask is None:
        return None
    vessels = check_mask(vessel_mask, shape)
    return vessels


def replay(
    manifest: dict,
    image: np.ndarray,
    organ_mask: np.ndarray,
    *,
    verify: bool = True,
    vessel_mask: np.ndarray | None = None,
    protect: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> Synthesis:
    """Render a manifest again on the same inputs: bit-identical image and label.

    Args:
        manifest: as returned in :attr:`Synthesis.manifest` (or read with ``load_manifest``).
        image, organ_mask: the inputs of the original call.
        verify: refuse inputs whose checksums differ from the recorded ones.
        vessel_mask: the known vessels, if the original call was given some.
        protect: the protected voxels, if the original call was given some.
        out: an array for the result image, as in :func:`synthesize`.
    """
    manifest = check_manifest(manifest)
    params = SynthesisParams.from_dict(manifest["params"])
    organ_profile = OrganProfile.from_dict(manifest["organ_profile"])
    image, geometry, output = _prepare(
        image, organ_mask, manifest["spacing_mm"], params.axial_axis, out
    )
    with _cancelled_on_error(output):
        known = _replay_inputs(manifest, image, geometry, vessel_mask, verify=verify)
        protected = _replay_protect(manifest, image, protect, verify=verify)
        geometry = check_room(
            geometry, organ_profile.tumor_type(params.tumor_type), organ_profile.organ
        )
        geometry = _restrict(image, geometry, organ_profile, protected)
        vessels = None
        if params.profile == "realistic":
            vessels = VesselDetector.fit(
                image,
                geometry.organ,
                geometry.box,
                geometry.spacing,
                organ_profile.realistic,
                known=known,
            )
        result = render_synthesis(
            image, geometry, params, organ_profile, vessels=vessels, output=output
        )
    return Synthesis(result, lambda: manifest)


def _replay_inputs(manifest, image, geometry, vessel_mask, *, verify: bool) -> np.ndarray | None:
    """Refuse inputs other than the recorded ones; returns the known vessel mask, if any."""
    if list(image.shape) != list(manifest["shape"]):
        raise ManifestError(
            f"image shape {image.shape} differs from the manifest's {tuple(manifest['shape'])}"
        )
    recorded = manifest["input"]
    if (
        verify
        and recorded.get("image_sha256")
        and array_checksum(image) != recorded["image_sha256"]
    ):
        raise ManifestError(
            "image differs from the one the manifest was made from (sha256 mismatch)"
        )
    if (
        verify
        and recorded.get("mask_sha256")
        and geometry is not None
        and array_checksum(geometry.mask) != recorded["mask_sha256"]
    ):
        raise ManifestError(
            "organ mask differs from the one the manifest was made from (sha256 mismatch)"
        )
    recorded_vessels = recorded.get("vessel_mask_sha256")
    if recorded_vessels and vessel_mask is None:
        raise ManifestError("the manifest was made with a vessel mask: pass the same `vessel_mask`")
    known = _known_vessels(vessel_mask, image.shape)
    if verify and known is not None and recorded_vessels not in (None, "given"):
        if array_checksum(known) != recorded_vessels:
            raise ManifestError(
                "vessel mask differs from the one the manifest was made with (sha256 mismatch)"
            )
    return known


def _replay_protect(manifest, image, protect, *, verify: bool) -> np.ndarray | None:
    """The protected voxels of a replay: required when the manifest was made with some."""
    recorded = manifest["input"].get("protect_mask_sha256")
    if recorded and protect is None:
        raise ManifestError("the manifest was made with a protect mask: pass the same `protect`")
    if protect is not None and not recorded:
        raise ManifestError("the manifest was made without a protect mask: do not pass `protect`")
    protected = _known_vessels(protect, image.shape)
    if verify and protected is not None and recorded != "given":
        if array_checksum(protected) != recorded:
            raise ManifestError(
                "protect mask differs from the one the manifest was made with (sha256 mismatch)"
            )
    return protected
