"""Where tumor centres go: the released slice-based sampler, with retries instead of crashes.

For each ellipsoid: take the organ's bounding box, pick an axial slice at a uniform fraction of
the organ's axial extent, erode that slice's organ mask with a small square, and pick a uniform
random voxel of what is left. When a slice is empty after erosion another is tried; when a
whole axial range fails the next (wider) range of the profile is tried; when all fail the organ
is too small for the tumor and :class:`OrganTooSmallError` says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from syntumor_core.errors import OrganTooSmallError
from syntumor_core.synthesis.config import PlacementSpec
from syntumor_core.synthesis.separable import erode_box


@dataclass(frozen=True, eq=False)
class OrganGeometry:
    """Facts about the organ mask computed once per call.

    ``mask`` is the caller's mask (any memory order; read only for checksums). Everything the
    synthesis reads works on contiguous copies over the organ's bounding ``box``: ``organ``
    (the mask there) and ``domain`` (the organ voxels a tumor may occupy or change: the organ
    minus ``protect``ed voxels and, for profiles that restrict the tissue, voxels outside its
    HU range). The copies keep the input's memory order (a column-ordered mask, as nibabel
    gives, is copied without a transposition), and what is read from them are small boxes, so
    the speed does not depend on the inputs' memory order.
    """

    mask: np.ndarray
    box: tuple[slice, slice, slice]
    axial_axis: int
    spacing: tuple[float, float, float]
    voxel_count: int
    organ: np.ndarray | None = None
    domain: np.ndarray | None = None
    protect: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.organ is None:
            object.__setattr__(self, "organ", np.array(self.mask[self.box], order="K"))
        if self.domain is None:
            object.__setattr__(self, "domain", self.organ)

    @property
    def volume_mm3(self) -> float:
        return self.voxel_count * float(np.prod(self.spacing))

    def restricted(self, domain: np.ndarray, protect: np.ndarray | None = None) -> OrganGeometry:
        """The same organ with a smaller domain (box-local, within ``organ``)."""
        return dataclasses.replace(self, domain=domain & self.organ, protect=protect)

    def organ_in(self, box) -> np.ndarray:
        """The organ over ``box`` (volume indices; empty outside the organ's box)."""
        return _crop_into(self.organ, self.box, box)

    def domain_in(self, box) -> np.ndarray:
        """The domain over ``box`` (volume indices; empty outside the organ's box)."""
        return _crop_into(self.domain, self.box, box)

    def protect_in(self, box) -> np.ndarray | None:
        """Protected voxels over ``box`` (volume indices), or None when nothing is protected."""
        if self.protect is None:
            return None
        return _crop_into(self.protect, self.box, box)


def _crop_into(local: np.ndarray, local_box, box) -> np.ndarray:
    """``local`` (covering ``local_box`` of a volume) read over ``box``, False elsewhere."""
    out = np.zeros([b.stop - b.start for b in box], dtype=bool)
    src, dst = [], []
    for b, o in zip(box, local_box, strict=True):
        start, stop = max(b.start, o.start), min(b.stop, o.stop)
        if start >= stop:
            return out
        src.append(slice(start - o.start, stop - o.start))
        dst.append(slice(start - b.start, stop - b.start))
    out[tuple(dst)] = local[tuple(src)]
    return out


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box holding every true voxel, or ``None`` when the mask is empty.

    Rows along the slowest axis in memory first (``argmax`` stops at a row's first true voxel,
    so only empty rows are read to the end), then one OR over the occupied slabs for the other
    two axes: a few ms for a 512×512×100 mask, in either memory order (a column-ordered mask,
    as nibabel gives, is read as its transpose: no copy).
    """
    if mask.flags.f_contiguous and not mask.flags.c_contiguous:
        box = bounding_box(mask.T)
        return None if box is None else box[::-1]  # type: ignore[return-value]
    rows = mask.reshape(mask.shape[0], -1)
    filled = np.flatnonzero(rows[np.arange(rows.shape[0]), rows.argmax(axis=1)])
    if filled.size == 0:
        return None
    first = slice(int(filled[0]), int(filled[-1]) + 1)
    plane = mask[first].any(axis=0)
    bounds = [first]
    for axis in (0, 1):
        occupied = np.flatnonzero(plane.any(axis=1 - axis))
        bounds.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(bounds)  # type: ignore[return-value]


def organ_geometry(mask: np.ndarray, spacing, axial_axis: int) -> OrganGeometry | None:
    box = bounding_box(mask)
    if box is None:
        return None
    organ = np.array(mask[box], order="K")
    count = int(np.count_nonzero(organ))
    return OrganGeometry(mask, box, axial_axis, tuple(float(s) for s in spacing), count, organ)  # type: ignore[arg-type]


def _eroded_slice(geometry: OrganGeometry, index: int, erode_mm: float | None) -> np.ndarray:
    axis = geometry.axial_axis
    box: list[slice] = [slice(None)] * 3
    local = index - geometry.box[axis].start
    box[axis] = slice(local, local + 1)
    plane = np.squeeze(geometry.domain[tuple(box)], axis=axis)  # type: ignore[index]
    if erode_mm:
        in_plane = [s for a, s in enumerate(geometry.spacing) if a != axis]
        # An odd, centred square: erode_mm = 5 at 1 mm is 5 voxels, i.e. 2 either side.
        size = tuple(
            2 * max(0, int(np.floor((erode_mm / s - 1.0) / 2.0 + 0.5))) + 1 for s in in_plane
        )
        if max(size) > 1:
            plane = erode_box(plane, size)
    return plane


def sample_centre(
    geometry: OrganGeometry, spec: PlacementSpec, *, rng: np.random.Generator, what: str
) -> tuple[int, int, int]:
    """A tumor centre (volume voxel index) by the released slice sampler.

    Args:
        geometry: the organ (see :func:`organ_geometry`).
        spec: axial ranges, erosion and retry count.
        rng: the generator every draw comes from.
        what: the tumor being placed, for the error message.
    """
    axis = geometry.axial_axis
    start, stop = geometry.box[axis].start, geometry.box[axis].stop
    extent = stop - 1 - start
    for low, high in spec.z_ranges:
        first, last = start + int(low * extent), start + int(high * extent)
        for _ in range(spec.max_tries):
            index = int(rng.integers(first, last, endpoint=True))
            plane = _eroded_slice(geometry, index, spec.erode_mm)
            candidates = np.flatnonzero(plane)
            if candidates.size == 0:
                continue
            pick = int(candidates[int(rng.integers(candidates.size))])
            in_plane = np.unravel_index(pick, plane.shape)
            offsets = [s.start for a, s in enumerate(geometry.box) if a != axis]
            centre = [int(i) + o for i, o in zip(in_plane, offsets, strict=True)]
            centre.insert(axis, index)
            return tuple(centre)  # type: ignore[return-value]
    ranges = ", ".join(f"{int(100 * lo)}–{int(100 * hi)} %" for lo, hi in spec.z_ranges)
    raise OrganTooSmallError(
        f"organ too small for {what}: no axial slice at {ranges} of its extent has organ voxels "
        f"left after a {spec.erode_mm} mm erosion ({spec.max_tries} slices tried per range; "
        f"organ has {geometry.voxel_count} voxels)"
    )
