"""Validate an uploaded NIfTI file without loading it: header checks, then voxels in slabs.

An upload can be hundreds of megabytes. :func:`scan_nifti` reads the header, applies the same
rules as :func:`syntumor_core.volume.load_nifti` (3-D, or 4-D and up with extra axes of length
1; 2..2048 voxels an axis; positive voxel size; a real-number voxel type; an invertible affine)
and then streams the voxel data through in slabs of :data:`SLAB_BYTES`, checking every value
(finite for images; integers that fit int16 for label maps) and that the file is not truncated.
Memory stays at about one slab whatever the file's size; gzip-compressed files are
decompressed on the fly.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from syntumor_core.errors import VolumeError
from syntumor_core.volume import (
    check_shape,
    check_voxel_type,
    read_nifti_header,
)

SLAB_BYTES = 8 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
INT16_RANGE = (-32768, 32767)


class NiftiScanError(ValueError):
    """The file is not an acceptable NIfTI volume; the message says why, naming the file."""


@dataclass(frozen=True)
class NiftiSummary:
    """What the scan learned.

    Args:
        shape: voxels along the three array axes.
        spacing_mm: voxel size in mm along each array axis (norms of the affine's columns).
        affine: the 4×4 voxel-to-world matrix (RAS+, mm) as the core reads it.
        compressed: whether the file is gzip-compressed.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    compressed: bool


def is_gzip(path: Path) -> bool:
    with Path(path).open("rb") as probe:
        return probe.read(2) == GZIP_MAGIC


def scan_nifti(path: Path, *, name: str, label: bool = False) -> NiftiSummary:
    """Check a NIfTI image (or label map) file in bounded memory.

    Args:
        path: the file (``.nii`` or gzip-compressed; recognised by content).
        name: how to call the file in messages (the uploaded name, never a server path).
        label: check the values as a label map (integers in int16) instead of CT numbers.

    Raises:
        NiftiScanError: naming the rule the file breaks.
    """
    compressed = is_gzip(path)
    try:
        with gzip.open(path, "rb") if compressed else Path(path).open("rb") as stream:
            header = _read_header(stream, name)
            shape = _data_shape(header, name)
            affine = _affine(header, name)
            dtype = _voxel_type(header, name)
            scaling = _scaling(header, name)
            offset = int(header.get_data_offset())
            if offset < header.template_dtype.itemsize:
                raise NiftiScanError(f"{name}: invalid NIfTI header: voxel offset {offset}")
            _skip_to(stream, offset, name)
            _scan_voxels(stream, shape, dtype, scaling, name, label)
    except (OSError, EOFError, zlib.error) as error:
        what = "broken or truncated gzip data" if compressed else "cannot read the file"
        raise NiftiScanError(f"{name}: {what} ({error})") from None
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return NiftiSummary(shape, tuple(float(s) for s in spacing), affine, compressed)  # type: ignore[arg-type]


def _read_header(stream, name: str):
    try:
        return read_nifti_header(stream, name)
    except VolumeError as error:
        raise NiftiScanError(str(error)) from None


def _data_shape(header, name: str) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in header.get_data_shape())
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        shape = shape[:3]
    if len(shape) != 3:
        raise NiftiScanError(
            f"{name}: a CT volume must be 3-D, got {len(shape)}-D shape {shape}; only extra "
            "axes of length 1 are accepted"
        )
    try:
        check_shape(shape, name)  # the core's rule, the one every loader applies
    except VolumeError as error:
        raise NiftiScanError(str(error)) from None
    pixdim = [float(v) for v in header["pixdim"][1:4]]
    if not all(np.isfinite(v) and v > 0 for v in pixdim):
        raise NiftiScanError(f"{name}: voxel size (pixdim) must be > 0 mm, got {tuple(pixdim)}")
    return shape  # type: ignore[return-value]


def _affine(header, name: str) -> np.ndarray:
    try:
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    except nib.spatialimages.HeaderDataError as error:
        raise NiftiScanError(f"{name}: invalid NIfTI header: {error}") from None
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise NiftiScanError(f"{name}: the affine must be a finite 4×4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiScanError(f"{name}: the affine's axes are not independent (determinant 0)")
    return affine.astype(np.float32).astype(np.float64)  # what NIfTI stores and the core reads


def _voxel_type(header, name: str) -> np.dtype:
    try:
        dtype = header.get_data_dtype()
    except nib.spatialimages.HeaderDataError as error:
        raise NiftiScanError(f"{name}: invalid NIfTI header: {error}") from None
    try:
        return check_voxel_type(dtype, name)
    except VolumeError as error:
        raise NiftiScanError(str(error)) from None


def _scaling(header, name: str) -> tuple[float, float] | None:
    try:
        slope, inter = header.get_slope_inter()
    except nib.spatialimages.HeaderDataError as error:
        raise NiftiScanError(f"{name}: invalid scaling in the NIfTI header: {error}") from None
    if slope is None or (slope == 1.0 and inter == 0.0):
        return None
    return float(slope), float(inter)


def _skip_to(stream, offset: int, name: str) -> None:
    """Move to the voxel data (reading forward: gzip streams seek by decompressing)."""
    position = stream.tell()
    while position < offset:
        skipped = len(stream.read(min(offset - position, SLAB_BYTES)))
        if skipped == 0:
            raise NiftiScanError(f"{name}: truncated file: it ends before its voxel data")
        position += skipped


def _scan_voxels(stream, shape, dtype: np.dtype, scaling, name: str, label: bool) -> None:
    """Read every voxel once, slab by slab; raise on the first bad value or a short file."""
    total = int(np.prod(shape, dtype=np.int64))
    per_slab = max(1, SLAB_BYTES // dtype.itemsize)
    done = 0
    while done < total:
        count = min(per_slab, total - done)
        data = stream.read(count * dtype.itemsize)
        if len(data) < count * dtype.itemsize:
            raise NiftiScanError(
                f"{name}: truncated voxel data: the header declares shape {shape} of {dtype} "
                f"({total * dtype.itemsize} bytes) but the file holds "
                f"{done * dtype.itemsize + len(data)}"
            )
        values = np.frombuffer(data, dtype=dtype)
        if scaling is not None:
            values = values.astype(np.float64) * scaling[0] + scaling[1]
        if label:
            _check_labels(values, done, shape, name)
        else:
            _check_finite(values, done, shape, name)
        done += count


def _voxel_index(flat: int, shape) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape, order="F"))


def _check_finite(values: np.ndarray, start: int, shape, name: str) -> None:
    if values.dtype.kind != "f":
        return
    finite = np.isfinite(values.astype(np.float32))
    if not finite.all():
        where = _voxel_index(start + int(np.argmin(finite)), shape)
        raise NiftiScanError(
            f"{name}: holds NaN or infinite values (first at voxel {where}); every voxel of a "
            "CT image must be a finite number"
        )


def _check_labels(values: np.ndarray, start: int, shape, name: str) -> None:
    if values.dtype.kind == "f":
        integral = np.isfinite(values) & (values == np.round(values))
        if not integral.all():
            offset = int(np.argmin(integral))
            raise NiftiScanError(
                f"{name}: a label map must hold integers, got {values[offset]} at voxel "
                f"{_voxel_index(start + offset, shape)}"
            )
    low, high = values.min(), values.max()
    if low < INT16_RANGE[0] or high > INT16_RANGE[1]:
        raise NiftiScanError(f"{name}: label values {low}..{high} do not fit int16")
