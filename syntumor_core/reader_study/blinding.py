"""Blinding by construction: every case of a study on one grid, encoded the same way.

A reader must not learn a case's arm from anything but the image content (spec:
reader-study.md). A NIfTI file leaks its origin through the header (shape, voxel size, origin,
data type, description, intent, scaling), and a compressed file through its size.
So each case is:

1. resampled onto one :class:`CommonGrid` shared by the whole study (same shape, voxel size
   and affine), centred on the case's point of interest (:func:`resample_to_grid`; a pure crop,
   bit for bit, when the case already has the grid's voxel size and axes; a finer case is
   low-passed first, so it does not keep a sharper noise texture than the coarser arm);
2. encoded as an uncompressed NIfTI-1 (``.nii``) of int16 HU whose header bytes depend on the
   grid alone (:func:`encode_case`).

Every served file of a study then has the same length (``352 + 2 × voxels``) and the same
352 header bytes. Nothing is compressed: a compressed file's size follows its content, and
padding it to one size needs padding whose size follows the content just as well.

Example:
    >>> import numpy as np
    >>> grid = CommonGrid(shape=(8, 8, 8), spacing_mm=(2.0, 2.0, 2.0))
    >>> len(encode_case(np.zeros((8, 8, 8), np.float32), grid)) == served_size(grid)
    True
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from syntumor_core.errors import ParameterError, VolumeError

HU_MIN, HU_MAX = -1024, 3071
NIFTI_DATA_OFFSET = 352  # 348 header bytes and 4 of the (empty) extension flag


@dataclass(frozen=True)
class CommonGrid:
    """The grid every case of a study is shown on: RAS+ axes, centred on the world origin.

    Args:
        shape: voxels per axis.
        spacing_mm: voxel size per axis in mm.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 2:
            raise ParameterError(f"grid shape must be 3 axes of >= 2 voxels, got {self.shape}")
        if len(self.spacing_mm) != 3 or not all(0 < s <= 20 for s in self.spacing_mm):
            raise ParameterError(
                f"grid spacing must be 3 values in (0, 20] mm, got {self.spacing_mm}"
            )

    @property
    def affine(self) -> np.ndarray:
        """Voxel index → world mm; voxel ``shape // 2`` sits at the origin."""
        affine = np.diag([*(float(s) for s in self.spacing_mm), 1.0])
        affine[:3, 3] = [-(n // 2) * s for n, s in zip(self.shape, self.spacing_mm, strict=True)]
        return affine

    def to_dict(self) -> dict[str, list]:
        return {"shape": list(self.shape), "spacing_mm": list(self.spacing_mm)}

    @classmethod
    def from_dict(cls, data: dict) -> CommonGrid:
        return cls(
            tuple(int(n) for n in data["shape"]), tuple(float(s) for s in data["spacing_mm"])
        )  # type: ignore[arg-type]


def world_extent_mm(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """Size of a volume along the world axes R, A, S in mm (voxel count × projected spacing)."""
    return np.abs(np.asarray(affine, float)[:3, :3]) @ np.asarray(shape, float)


def common_grid(
    volumes: Sequence[tuple[Sequence[int], np.ndarray]],
    *,
    spacing_mm: Sequence[float] | None = None,
    box_mm: Sequence[float] | float | None = None,
) -> CommonGrid:
    """The grid for a study's cases: coarsest spacing, and a box every case can fill.

    Args:
        volumes: ``(shape, affine)`` of every case.
        spacing_mm: voxel size of the grid; default per axis the coarsest of the cases, so no
            case is shown at a finer grid than it was acquired.
        box_mm: largest box edge(s) in mm; the box is also at most every case's own extent
            (no case is padded with invented voxels).
    """
    if not volumes:
        raise ParameterError("a common grid needs at least one case")
    extents = np.array([world_extent_mm(shape, affine) for shape, affine in volumes])
    spacings = np.array([np.abs(np.asarray(a, float)[:3, :3]).max(axis=1) for _, a in volumes])
    spacing = np.asarray(spacing_mm if spacing_mm is not None else spacings.max(axis=0), float)
    box = extents.min(axis=0)
    if box_mm is not None:
        box = np.minimum(box, np.broadcast_to(np.asarray(box_mm, float), (3,)))
    shape = tuple(max(2, int(math.floor(b / s + 1e-6))) for b, s in zip(box, spacing, strict=True))
    return CommonGrid(shape, tuple(round(float(s), 6) for s in spacing))  # type: ignore[arg-type]


def _centre_voxel(shape, affine, centre_world, grid: CommonGrid) -> np.ndarray:
    """The case voxel (index space) the grid's centre voxel lands on, kept inside the case."""
    inverse = np.linalg.inv(affine)
    centre = inverse[:3, :3] @ np.asarray(centre_world, float) + inverse[:3, 3]
    step = np.abs(inverse[:3, :3]) @ np.asarray(grid.spacing_mm, float)  # voxels per grid step
    below = step * np.array([n // 2 for n in grid.shape])
    above = step * np.array([n - 1 - n // 2 for n in grid.shape])
    low, high = below, np.asarray(shape, float) - 1 - above
    centre = np.where(low <= high, np.clip(centre, low, high), (np.asarray(shape) - 1) / 2.0)
    return np.round(centre)


def resample_to_grid(
    array: np.ndarray,
    affine: np.ndarray,
    grid: CommonGrid,
    centre_world: Sequence[float],
    *,
    order: int = 1,
) -> np.ndarray:
    """Sample a case onto ``grid``, the grid's centre voxel at ``centre_world`` (mm).

    The centre is moved, if needed, so the box stays inside the case, and snapped to a voxel
    of the case; with the grid's spacing and RAS axes the result is then an exact crop.

    Args:
        array: 3-D image (HU) or label map.
        affine: its voxel → world affine.
        grid: the study's grid.
        centre_world: point of interest in world mm (e.g. a tumor's centroid).
        order: 1 (linear) for images, 0 (nearest) for label maps.

    Returns:
        float32 (order 1) or the input's dtype (order 0) array of ``grid.shape``.
    """
    array = np.asarray(array)
    affine = np.asarray(affine, float)
    if array.ndim != 3:
        raise VolumeError(f"a case must be 3-D, got shape {array.shape}")
    centre_voxel = _centre_voxel(array.shape, affine, centre_world, grid)
    centre = affine[:3, :3] @ centre_voxel + affine[:3, 3]
    inverse = np.linalg.inv(affine)
    axes = [
        centre[a] + (np.arange(n) - n // 2) * grid.spacing_mm[a] for a, n in enumerate(grid.shape)
    ]
    out_dtype = np.float32 if order else array.dtype
    out = np.empty(grid.shape, dtype=out_dtype)
    source = array.astype(np.float32, copy=False) if order else array
    if order:
        source = _antialiased(source, np.abs(inverse[:3, :3]) @ np.asarray(grid.spacing_mm, float))
    x, y = np.meshgrid(axes[0], axes[1], indexing="ij")
    for k, z in enumerate(axes[2]):  # slice by slice: bounded memory for large grids
        world = np.stack([x, y, np.full_like(x, z)])
        voxel = np.tensordot(inverse[:3, :3], world, axes=1) + inverse[:3, 3, None, None]
        out[:, :, k] = ndimage.map_coordinates(source, voxel, order=order, mode="nearest")
    return out


def _antialiased(image: np.ndarray, steps_vox: np.ndarray) -> np.ndarray:
    """Low-pass a case before it is sampled at ``steps_vox`` of its voxels per grid step.

    A case on a finer grid than the study's is blurred as if it had been acquired at the
    coarser spacing (Gaussian, sigma ``0.5 * sqrt(step**2 - 1)`` voxels per axis), so that its
    noise does not alias into a texture the other arm lacks. A case already at the grid's
    spacing (step 1) is left as it is.
    """
    sigma = 0.5 * np.sqrt(np.maximum(steps_vox**2 - 1.0, 0.0))
    if float(sigma.max()) < 0.05:
        return image
    return ndimage.gaussian_filter(image, sigma, mode="nearest")


def served_size(grid: CommonGrid) -> int:
    """Bytes of every served file on ``grid``: the header block and int16 voxels."""
    return NIFTI_DATA_OFFSET + 2 * int(np.prod(grid.shape))


def encode_case(image_hu: np.ndarray, grid: CommonGrid) -> bytes:
    """An uncompressed NIfTI-1 (``.nii``) of ``image_hu`` whose header depends only on ``grid``.

    Voxels are rounded to int16 and clipped to [-1024, 3071] HU; the header has the grid's
    affine as sform and qform (code 1), millimetre units, no description, intent, scaling or
    display range. The result is always :func:`served_size` bytes long.

    Args:
        image_hu: array of ``grid.shape`` in HU.
        grid: the study's grid.
    """
    image_hu = np.asarray(image_hu)
    if tuple(image_hu.shape) != tuple(grid.shape):
        raise VolumeError(f"case has shape {image_hu.shape}, the grid {grid.shape}")
    voxels = np.clip(np.rint(image_hu), HU_MIN, HU_MAX).astype(np.int16)
    image = nib.Nifti1Image(voxels, grid.affine)
    header = image.header
    header.set_qform(grid.affine, code=1)
    header.set_sform(grid.affine, code=1)
    header.set_xyzt_units("mm", "sec")
    header.set_intent("none")
    header["descrip"] = b""
    header["aux_file"] = b""
    header["cal_min"] = header["cal_max"] = 0.0
    header.set_slope_inter(1.0, 0.0)
    data = image.to_bytes()
    if len(data) != served_size(grid):
        raise VolumeError(f"encoded case has {len(data)} bytes, expected {served_size(grid)}")
    return data


def decode_case(data: bytes) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    """Read back a served case (``.nii``, or ``.nii.gz`` of studies encoded before 0.2):
    (voxels, affine, header)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    image = nib.Nifti1Image.from_bytes(data)
    return np.asarray(image.dataobj), image.affine, image.header
