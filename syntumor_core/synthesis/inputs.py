"""Checks of the arrays handed to the synthesis, with errors that name the problem."""

from __future__ import annotations

import numpy as np

from syntumor_core.errors import MaskError, ParameterError, VolumeError


def check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except TypeError as error:
        raise ParameterError(f"`spacing` must be three numbers in mm, got {spacing!r}") from error
    if len(values) != 3 or not all(np.isfinite(v) and 0.05 <= v <= 20.0 for v in values):
        raise ParameterError(f"`spacing` must be three numbers in [0.05, 20] mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise VolumeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3:
        raise VolumeError(f"image must be 3-D, got {image.ndim}-D with shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise VolumeError(f"image must hold real numbers (HU), got dtype {image.dtype}")
    if min(image.shape) < 2:
        raise VolumeError(
            f"image must be at least 2 voxels along each axis, got shape {image.shape}"
        )
    return image


def check_finite(image: np.ndarray, box) -> None:
    """NaN or infinite values where the synthesis reads (the organ's box) are refused."""
    region = image[box]
    if np.issubdtype(region.dtype, np.floating):
        # One pass: a finite sum means every value is finite (a NaN or an infinity makes it
        # NaN or infinite); only an overflowing sum needs the exact check.
        with np.errstate(all="ignore"):
            total = region.sum()
        if np.isfinite(total) or np.isfinite(region).all():
            return
        bad = int(np.count_nonzero(~np.isfinite(region)))
        raise VolumeError(f"image has {bad} NaN or infinite values inside the organ's bounding box")


def check_mask(organ_mask, image_shape) -> np.ndarray:
    if not isinstance(organ_mask, np.ndarray):
        raise MaskError(f"organ mask must be a numpy array, got {type(organ_mask).__name__}")
    if organ_mask.ndim != 3:
        raise MaskError(
            f"organ mask must be 3-D, got {organ_mask.ndim}-D with shape {organ_mask.shape}"
        )
    if organ_mask.shape != tuple(image_shape):
        raise MaskError(
            f"organ mask shape {organ_mask.shape} does not match image shape {tuple(image_shape)}"
        )
    if organ_mask.dtype != bool:
        organ_mask = organ_mask != 0
    return organ_mask


def check_axial_axis(axial_axis: int) -> int:
    if axial_axis not in (0, 1, 2):
        raise ParameterError(f"`axial_axis` must be 0, 1 or 2, got {axial_axis!r}")
    return int(axial_axis)


def row_ordered(view: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A C-ordered copy of a 3-D ``view`` (e.g. a box of a column-ordered volume, as nibabel
    gives), the same values as ``np.array(view, dtype, order="C")``.

    A column-ordered source is copied one plane of the middle axis at a time: each plane is a
    small 2-D transposition that stays in the cache, about twice as fast as numpy's copy of the
    whole box, whose inner loop strides through memory.
    """
    out = np.empty(view.shape, dtype=dtype)
    if view.ndim == 3 and abs(view.strides[0]) < abs(view.strides[2]):
        for index in range(view.shape[1]):
            out[:, index, :] = view[:, index, :]
    else:
        out[...] = view
    return out
