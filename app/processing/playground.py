"""The synthesis playground's preview: tumors where a person clicked, on a crop, within a second.

A preview synthesizes only a box around the requested centres (the engine's work grows with the
box, not the scan) and answers it as a small NIfTI on the image's own grid, which the viewer
lays over the full image. The scan and its mask are kept loaded between previews of the same
volumes (a person drags sliders: many previews of one scan), a few scans at most. The full
synthesis ("apply") is a job like any other.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from app.volumes.storage import Storage
from syntumor_core.errors import MaskError
from syntumor_core.synthesis import engine
from syntumor_core.synthesis.organs import get_organ_profile, tuned_profile

MARGIN_MM = 12.0  # around the largest tumor, for its deformation, blur and mass effect
LOADED_SCANS = 4


@dataclass(frozen=True)
class PreviewRequest:
    organ: str
    tumor_type: str
    profile: str
    seed: int
    mask_labels: tuple[int, ...]
    protect_labels: tuple[int, ...]
    centers: tuple[tuple[int, int, int], ...]
    radius_mm: float | None
    drop_hu: float | None
    texture_mm: float | None = None
    rim: float | None = None
    mass_effect: float | None = None


@functools.lru_cache(maxsize=LOADED_SCANS)
def _loaded(storage_root: str, path: str, label: bool):
    volume = Storage(storage_root).load(path, label=label)
    array = np.ascontiguousarray(volume.array, dtype=np.uint8 if label else np.float32)
    array.flags.writeable = False
    return array, volume.affine, volume.spacing, volume.axial_axis


def _reach_mm(request: PreviewRequest) -> float:
    """Half the box's side: the largest semi-axis the tumors can have, plus a margin."""
    if request.radius_mm is not None:
        largest = request.radius_mm
    else:
        tumor = get_organ_profile(request.organ).tumor_type(request.tumor_type)
        largest = max(group.semi_axis_range_mm[1] for group in tumor.groups)
    return 1.5 * largest + MARGIN_MM


def preview(storage: Storage, image_path: str, mask_path: str, request: PreviewRequest) -> bytes:
    """The crop around ``request.centers`` with its tumors, as uncompressed NIfTI bytes (int16
    HU, the crop's affine on the image's grid).

    Raises:
        SynTumorError: from the engine, e.g. a centre outside the organ (a message to show).
    """
    image, affine, spacing, axial_axis = _loaded(str(storage.root), image_path, False)
    labels = _loaded(str(storage.root), mask_path, True)[0]
    points = np.array(request.centers)
    for point in request.centers:  # a point far outside the organ leaves no organ in the crop
        if labels[tuple(point)] not in request.mask_labels:
            raise MaskError(
                f"the point {tuple(point)} is not inside the {request.organ} mask: "
                f"choose a point in the {request.organ}"
            )
    reach = np.ceil(_reach_mm(request) / np.asarray(spacing)).astype(int)
    start = np.maximum(points.min(axis=0) - reach, 0)
    stop = np.minimum(points.max(axis=0) + reach + 1, image.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    crop_labels = labels[box]
    protect = np.isin(crop_labels, request.protect_labels) if request.protect_labels else None
    made = engine.synthesize(
        image[box], np.isin(crop_labels, request.mask_labels), spacing=spacing,
        seed=request.seed, tumor_type=request.tumor_type,
        organ_profile=tuned_profile(get_organ_profile(request.organ), texture_mm=request.texture_mm,
                                    rim=request.rim, mass_effect=request.mass_effect),
        profile=request.profile, axial_axis=axial_axis, protect=protect,
        centers=[tuple(int(v) for v in p - start) for p in points],
        radius_mm=request.radius_mm, drop_hu=request.drop_hu, checksums=False,
    )  # fmt: skip
    crop_affine = np.array(affine, dtype=float)
    crop_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    hu = np.clip(np.rint(made.image), -32768, 32767).astype(np.int16)
    nifti = nib.Nifti1Image(hu, crop_affine)
    nifti.header.set_xyzt_units("mm")
    buffer = io.BytesIO()
    buffer.write(nifti.to_bytes())
    return buffer.getvalue()
