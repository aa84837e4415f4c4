"""CT volumes with their geometry, and reading/writing them.

A :class:`Volume` is a 3-D array plus its 4×4 voxel-to-world affine (RAS+, millimetres, the
NIfTI convention). Everything past the loaders works on volumes in this canonical form: images
are float32 Hounsfield units, label maps small integers, and the affine is carried along as it
was read (non-RAS axis orders, flips and oblique affines are kept, never reoriented).

NIfTI is read and written here; DICOM series are assembled in :mod:`syntumor_core.dicom` and
wrapped into volumes by :func:`load_dicom_series`.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from syntumor_core.dicom import (
    DEFAULT_MAX_RATIO,
    DEFAULT_MAX_TOTAL_BYTES,
    DEFAULT_MAX_ZIP_MEMBERS,
    read_dicom_series,
    read_zip_members,
)
from syntumor_core.errors import MaskError, VolumeError

__all__ = [
    "Volume", "check_resampled_size", "check_voxel_type", "load_dicom_series", "load_label_nifti",
    "load_nifti", "load_volume", "read_zip_members", "resampled_shape", "save_nifti",
    "validate_image", "validate_mask",
]  # fmt: skip

logger = logging.getLogger(__name__)

MIN_AXIS_LENGTH = 2
MAX_AXIS_LENGTH = 2048
MAX_VOXELS = 2**30
MAX_RESAMPLED_VOXELS = 2**28
"""Default budget of a grid a volume is resampled to (268 M voxels: 1 GiB per float32 copy, and
resampling holds a few): a 64³ volume of 20 mm voxels resampled to 1 mm would need 2.1 G."""
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADER_CLASSES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D array and its voxel-to-world affine (RAS+, mm).

    Args:
        array: the voxel data; float32 Hounsfield units for images, integers for label maps.
        affine: 4×4 matrix mapping voxel indices to RAS+ world coordinates in millimetres.
    """

    array: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        norms = np.sqrt((np.asarray(self.affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
        return tuple(float(n) for n in norms)  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis points to, e.g. ``("R", "A", "S")``."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def axial_axis(self) -> int:
        """Index of the array axis that runs inferior–superior (the one axial slices cut)."""
        codes = self.axcodes
        for axis, code in enumerate(codes):
            if code in ("S", "I"):
                return axis
        return 2


# --------------------------------------------------------------------------- validation


def check_shape(shape: tuple[int, ...], name: str) -> None:
    """The volume rules every loader applies: 3-D, each axis within
    :data:`MIN_AXIS_LENGTH`..:data:`MAX_AXIS_LENGTH`, at most :data:`MAX_VOXELS` voxels.

    Raises:
        VolumeError: naming ``name`` and the rule broken.
    """
    if len(shape) != 3:
        raise VolumeError(f"{name} must be 3-D, got {len(shape)}-D shape {tuple(shape)}")
    for axis, length in enumerate(shape):
        if not MIN_AXIS_LENGTH <= length <= MAX_AXIS_LENGTH:
            raise VolumeError(
                f"{name} has {length} voxels along axis {axis} (shape {tuple(shape)}); each axis "
                f"must hold {MIN_AXIS_LENGTH}..{MAX_AXIS_LENGTH} voxels"
            )
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise VolumeError(f"{name} shape {tuple(shape)} exceeds the limit of {MAX_VOXELS} voxels")


def check_voxel_type(dtype, name: str) -> np.dtype:
    """Refuse voxel types that are not plain real numbers (complex, bool, records, text).

    The one rule for every reader of voxel data (the CLI's loaders here, the server's upload
    scanner): a complex image would otherwise lose its imaginary part without a word.

    Raises:
        VolumeError: "<name>: unsupported NIfTI voxel type <dtype>; use real numbers".
    """
    dtype = np.dtype(dtype)
    if (
        dtype.fields is not None
        or dtype == np.bool_
        or not np.issubdtype(dtype, np.number)
        or dtype.kind == "c"
    ):
        raise VolumeError(f"{name}: unsupported NIfTI voxel type {dtype}; use real numbers")
    return dtype


def resampled_shape(shape, spacing_mm, target_spacing_mm) -> tuple[int, int, int]:
    """The shape of a volume resampled to ``target_spacing_mm``, as an upper bound: every axis
    at the finest target spacing (the axes may be reordered before resampling).

    Args:
        shape: voxels along each axis.
        spacing_mm: the volume's voxel size along each axis, mm.
        target_spacing_mm: the grid it is resampled to, mm (one value or three).
    """
    finest = min(float(s) for s in np.broadcast_to(np.asarray(target_spacing_mm, float), 3))
    if not finest > 0:
        raise VolumeError(f"target spacing must be > 0 mm, got {target_spacing_mm!r}")
    return tuple(  # type: ignore[return-value]
        max(1, math.ceil(int(n) * float(s) / finest - 1e-6))
        for n, s in zip(shape, spacing_mm, strict=True)
    )


def check_resampled_size(
    shape,
    spacing_mm,
    target_spacing_mm,
    *,
    max_voxels: int = MAX_RESAMPLED_VOXELS,
    name: str = "volume",
) -> tuple[int, int, int]:
    """Refuse a volume whose resampled grid would not fit the memory budget.

    Call it before resampling (segmentation, training), with the shape and spacing a file's
    header gives, so that nothing large is ever allocated.

    Args:
        shape, spacing_mm, target_spacing_mm: as for :func:`resampled_shape`.
        max_voxels: the budget, in voxels of the resampled grid.
        name: how the volume is called in the message.

    Returns:
        The resampled shape.

    Raises:
        VolumeError: naming the shape, spacing, grid, voxel count and budget.
    """
    new_shape = resampled_shape(shape, spacing_mm, target_spacing_mm)
    voxels = math.prod(new_shape)
    if voxels > max_voxels:
        spacing = tuple(round(float(s), 3) for s in spacing_mm)
        target = min(float(s) for s in np.broadcast_to(np.asarray(target_spacing_mm, float), 3))
        raise VolumeError(
            f"{name}: shape {tuple(int(n) for n in shape)} at {spacing} mm resampled to the "
            f"{target:g} mm grid would be {new_shape} = {voxels:,} voxels "
            f"({voxels * 4 / 2**30:.1f} GiB as float32), over the budget of {max_voxels:,} voxels"
        )
    return new_shape


def validate_image(array: np.ndarray, *, name: str = "image") -> None:
    """Check that ``array`` can be a CT image: 3-D, real numbers, finite, of a sane size.

    Args:
        array: the voxel data.
        name: how the array is called in error messages (e.g. the file it came from).

    Raises:
        VolumeError: naming the rule broken (dimensions, dtype, axis length, NaN/inf voxels).
    """
    if not isinstance(array, np.ndarray):
        raise VolumeError(f"{name} must be a numpy array, got {type(array).__name__}")
    dtype = array.dtype
    if dtype == np.bool_ or not np.issubdtype(dtype, np.number) or dtype.kind == "c":
        raise VolumeError(f"{name} must hold real numbers, got dtype {dtype}")
    check_shape(array.shape, name)
    if dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            bad = np.argwhere(~finite)
            n_nan = int(np.isnan(array).sum())
            n_inf = len(bad) - n_nan
            raise VolumeError(
                f"{name} holds {n_nan} NaN and {n_inf} infinite values (first at voxel "
                f"{tuple(int(i) for i in bad[0])}); every voxel must be a finite number"
            )


def validate_mask(
    mask: np.ndarray, image_shape: tuple[int, ...], *, name: str = "mask"
) -> np.ndarray:
    """Check a binary mask against its image and return it as a boolean array.

    Args:
        mask: bool array, or numbers that are all 0 or 1.
        image_shape: shape of the image the mask belongs to.
        name: how the mask is called in error messages.

    Returns:
        The mask as ``np.ndarray`` of dtype bool (the input itself when it already is one).

    Raises:
        MaskError: wrong dimensions or shape, non-binary values, or no voxel set.
    """
    array = np.asarray(mask)
    if array.ndim != 3:
        raise MaskError(f"{name} must be 3-D, got shape {array.shape}")
    if tuple(array.shape) != tuple(int(n) for n in image_shape):
        raise MaskError(
            f"{name} shape {array.shape} does not match image shape {tuple(image_shape)}"
        )
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.number):
            raise MaskError(f"{name} must be bool or 0/1 numbers, got dtype {array.dtype}")
        binary = (array == 0) | (array == 1)
        if not binary.all():
            examples = np.unique(array[~binary])[:5].tolist()
            raise MaskError(
                f"{name} must be binary (bool or 0/1), got values such as {examples}; "
                "select one label first, e.g. labels == 1"
            )
        array = array != 0
    if not array.any():
        raise MaskError(f"{name} is empty: no voxel is set")
    return array


def _check_affine(affine: np.ndarray, name: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise VolumeError(f"{name}: affine must be a finite 4×4 matrix, got {affine.tolist()}")
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if (spacing <= 0).any() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(
            f"{name}: voxel spacing must be > 0 mm along every axis with independent axes, "
            f"got spacing {tuple(round(float(s), 6) for s in spacing)} mm"
        )
    return affine


# --------------------------------------------------------------------------- NIfTI reading


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: file not found")
    if path.is_dir():
        raise VolumeError(f"{path}: is a folder, expected a file")
    return path


def read_nifti_header(stream, path: str | Path):
    """Read and check the NIfTI-1/-2 header at the start of a binary stream.

    Args:
        stream: an open binary file (gzip streams work), positioned at byte 0.
        path: how the file is named in error messages.

    Raises:
        VolumeError: no NIfTI header, a truncated one, or a .hdr/.img pair.
    """
    first = stream.read(4)
    sizes = {int.from_bytes(first, "little"), int.from_bytes(first, "big")} if first else set()
    header_size = next((size for size in _NIFTI_HEADER_CLASSES if size in sizes), None)
    if len(first) < 4 or header_size is None:
        raise VolumeError(f"{path}: not a NIfTI file (no NIfTI-1 or NIfTI-2 header found)")
    block = first + stream.read(header_size - 4)
    if len(block) < header_size:
        raise VolumeError(f"{path}: truncated NIfTI header ({len(block)} of {header_size} bytes)")
    header = _NIFTI_HEADER_CLASSES[header_size](binaryblock=block, check=False)
    magic = bytes(header["magic"].item())
    if magic in (b"ni1", b"ni2"):
        raise VolumeError(f"{path}: a .hdr/.img pair is not supported; convert to a single .nii")
    if magic not in (b"n+1", b"n+2"):
        raise VolumeError(f"{path}: not a NIfTI file (magic {magic!r}, expected b'n+1' or b'n+2')")
    return header


def _nifti_shape(header, path: Path) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in header.get_data_shape())
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        logger.info("%s: squeezing trailing axes of length 1 from shape %s", path, shape)
        shape = shape[:3]
    elif len(shape) > 3:
        raise VolumeError(
            f"{path}: image must be 3-D, got {len(shape)}-D shape {shape}; only extra axes of "
            "length 1 (e.g. a 4th axis of size 1) are accepted and squeezed"
        )
    check_shape(shape, f"{path}: image")
    pixdim = [float(v) for v in header["pixdim"][1:4]]
    if not all(np.isfinite(v) and v > 0 for v in pixdim):
        raise VolumeError(f"{path}: voxel size (pixdim) must be > 0 mm, got {tuple(pixdim)}")
    return shape  # type: ignore[return-value]


def _read_nifti(path: str | Path) -> tuple[Path, object, np.ndarray, np.ndarray]:
    """Read a single-file NIfTI into (path, header, raw array, float32-exact affine)."""
    path = _existing_file(path)
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as stream:
            header = read_nifti_header(stream, path)
            shape = _nifti_shape(header, path)
            try:
                dtype = header.get_data_dtype()
                affine = _check_affine(header.get_best_affine(), str(path))
            except nib.spatialimages.HeaderDataError as exc:
                raise VolumeError(f"{path}: invalid NIfTI header: {exc}") from exc
            check_voxel_type(dtype, str(path))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            offset = int(header.get_data_offset())
            if offset < header.template_dtype.itemsize:
                raise VolumeError(f"{path}: invalid NIfTI header: voxel offset {offset}")
            stream.seek(offset)
            data = stream.read(nbytes)
    except (OSError, EOFError, zlib.error) as exc:
        what = "broken or truncated gzip data" if compressed else "cannot read the file"
        raise VolumeError(f"{path}: {what} ({exc})") from exc
    if len(data) < nbytes:
        raise VolumeError(
            f"{path}: truncated voxel data: the header declares shape {shape} of {dtype} "
            f"({nbytes} bytes) but the file holds {len(data)}"
        )
    raw = np.frombuffer(data, dtype=dtype).reshape(shape, order="F")
    # NIfTI stores the sform as float32: round so that saving again is bit-exact.
    return path, header, raw, affine.astype(np.float32).astype(np.float64)


def _slope_inter(header, path: Path) -> tuple[float, float] | None:
    try:
        slope, inter = header.get_slope_inter()
    except nib.spatialimages.HeaderDataError as exc:
        raise VolumeError(f"{path}: invalid scaling in the NIfTI header: {exc}") from exc
    if slope is None or (slope == 1.0 and inter == 0.0):
        return None
    return float(slope), float(inter)


def load_nifti(path: str | Path) -> Volume:
    """Load a NIfTI CT image as float32 Hounsfield units.

    ``scl_slope``/``scl_inter`` are applied. The affine is the sform when its code is set, else
    the qform, else one built from ``pixdim``, rounded to float32 (the precision NIfTI stores
    the sform in), so that :func:`save_nifti` writes it back exactly. A 4-D (or higher) file
    whose extra axes all have length 1 is squeezed to 3-D.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file (recognised by content, not only by suffix).

    Raises:
        VolumeError: missing file, not a NIfTI, broken gzip, truncated data, not 3-D, NaN/inf
            voxels, zero or negative spacing, or more than 2048 voxels along an axis.
    """
    path, header, raw, affine = _read_nifti(path)
    scaling = _slope_inter(header, path)
    if scaling is None:
        array = raw.astype(np.float32)
    else:
        array = (raw.astype(np.float64) * scaling[0] + scaling[1]).astype(np.float32)
    validate_image(array, name=f"{path}: image")
    return Volume(array, affine)


def load_label_nifti(path: str | Path) -> Volume:
    """Load a NIfTI label map as integers: uint8 when the values fit, else int16.

    Args:
        path: a ``.nii`` or ``.nii.gz`` label file.

    Raises:
        VolumeError: as :func:`load_nifti`, and for non-integer values or values outside int16.
    """
    path, header, raw, affine = _read_nifti(path)
    scaling = _slope_inter(header, path)
    values = raw if scaling is None else raw.astype(np.float64) * scaling[0] + scaling[1]
    if values.dtype.kind == "f":
        integral = np.isfinite(values) & (values == np.round(values))
        if not integral.all():
            voxel = tuple(int(i) for i in np.argwhere(~integral)[0])
            raise VolumeError(
                f"{path}: a label map must hold integers, got {values[voxel]} at voxel {voxel}"
            )
    low, high = (values.min(), values.max())
    if low >= 0 and high <= 255:
        return Volume(values.astype(np.uint8), affine)
    if low >= -32768 and high <= 32767:
        return Volume(values.astype(np.int16), affine)
    raise VolumeError(f"{path}: label values {low}..{high} do not fit int16")


# --------------------------------------------------------------------------- NIfTI writing


def _cast_for_saving(array: np.ndarray, dtype, path: Path) -> np.ndarray:
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    target = array.dtype if dtype is None else np.dtype(dtype)
    if dtype is None and target.kind in "iu" and target.itemsize == 8 and array.size:
        low, high = array.min(), array.max()  # 64-bit labels: few viewers read int64 NIfTI
        fits = [t for t in (np.uint8, np.int16, np.int32) if np.iinfo(t).min <= low <= high]
        target = next((np.dtype(t) for t in fits if high <= np.iinfo(t).max), target)
    if target.kind not in "uif" or target.itemsize > 8:
        raise VolumeError(f"{path}: cannot save voxels as {target}; use an integer or float type")
    if target.kind in "ui" and array.dtype.kind == "f":
        array = np.round(array)
    if target.kind in "ui" and array.size:
        info = np.iinfo(target)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise VolumeError(f"{path}: values {low}..{high} do not fit {target}")
    return array.astype(target, copy=False)


def save_nifti(volume: Volume, path: str | Path, *, dtype=None) -> Path:
    """Write a volume to ``.nii`` or ``.nii.gz`` (chosen by the suffix) with its affine.

    The affine goes into both the sform and the qform (code 1, scanner anatomical); the
    sform is authoritative on reading. "Exact" means: NIfTI stores the sform as float32, so a
    volume whose affine is float32-representable (every volume :func:`load_nifti` returns)
    comes back with a bit-identical array and affine; other affines are rounded to the nearest
    float32 (relative error below 1e-7). The qform is the closest rotation+zoom+flip (no
    shear), for readers that ignore the sform. No intensity scaling is written.

    Args:
        volume: the volume to write. Boolean arrays are written as uint8.
        path: destination ending in ``.nii`` or ``.nii.gz``; its folder must exist.
        dtype: voxel type on disk (e.g. ``np.int16`` for HU, ``np.uint8`` for labels); floats
            are rounded when an integer type is asked for. Default: the array's own dtype,
            except that 64-bit integers are narrowed to uint8, int16 or int32 when they fit.

    Returns:
        The path written.

    Raises:
        VolumeError: bad suffix, invalid volume, values that do not fit ``dtype``, or the
            file cannot be written.
    """
    path = Path(path)
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        raise VolumeError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    array = _cast_for_saving(np.asarray(volume.array), dtype, path)
    validate_image(array, name=f"volume to save as {path}")
    affine = _check_affine(volume.affine, str(path))
    if not np.array_equal(affine.astype(np.float32).astype(np.float64), affine):
        logger.debug("%s: affine rounded to float32 for the NIfTI sform", path)
    try:
        image = nib.Nifti1Image(array, affine, dtype=array.dtype)
    except nib.spatialimages.HeaderDataError as exc:
        raise VolumeError(f"{path}: NIfTI cannot store {array.dtype} voxels ({exc})") from exc
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    try:
        nib.save(image, path)
    except OSError as exc:
        raise VolumeError(f"{path}: cannot write the file ({exc})") from exc
    return path


# --------------------------------------------------------------------------- DICOM, dispatch


def load_dicom_series(
    path: str | Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_ZIP_MEMBERS,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Volume:
    """Load the largest DICOM series of a folder, a ``.zip`` or a single file as float32 HU.

    See :func:`syntumor_core.dicom.read_dicom_series` for the rules (slice order, LPS→RAS
    affine, the errors raised). The array axes are (column, row, slice).

    Args:
        path: folder (searched recursively), zip archive, or one DICOM file.
        max_total_bytes: zip only: the most bytes the members may unpack to.
        max_members: zip only: the most files the archive may hold.
        max_ratio: zip only: the highest compression ratio of a member larger than 1 MiB.

    Raises:
        DicomError: the series cannot be assembled (a subclass of VolumeError).
    """
    series = read_dicom_series(
        path, max_total_bytes=max_total_bytes, max_members=max_members, max_ratio=max_ratio
    )
    validate_image(series.array, name=f"DICOM series in {path}")
    return Volume(series.array, _check_affine(series.affine, str(path)))


def load_volume(path: str | Path) -> Volume:
    """Load a CT image from NIfTI (``.nii``/``.nii.gz``) or DICOM (folder, ``.zip``, file).

    Files without a telling suffix are recognised by their first bytes.

    Args:
        path: the file or folder.

    Raises:
        VolumeError: missing path, unrecognised type, or any error of the specific loader.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: file not found")
    if path.is_dir():
        return load_dicom_series(path)
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        return load_nifti(path)
    if name.endswith(".zip"):
        return load_dicom_series(path)
    with path.open("rb") as probe:
        head = probe.read(352)
    if head[:2] == _GZIP_MAGIC or head[344:347] == b"n+1" or head[4:7] == b"n+2":
        return load_nifti(path)
    if head[:4] == b"PK\x03\x04" or head[128:132] == b"DICM":
        return load_dicom_series(path)
    raise VolumeError(
        f"{path}: unrecognised file type; expected .nii, .nii.gz, a .zip of DICOM files, "
        "a DICOM file or a folder of DICOM files"
    )
