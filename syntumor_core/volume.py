"""CT volumes with their geometry, and reading/writing them.

A :class:`Volume` is a 3-D array plus its 4×4 voxel-to-world affine (RAS+, millimetres, the
NIfTI convention). Everything past the loaders works on volumes in this canonical form.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np


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
