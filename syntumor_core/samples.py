"""Small real CT data that registry packages ship, loaded at run time (never copied here).

The only sample today is LiTS case 117, a 128³ crop around the liver with liver and tumor
labels, shipped by the PyPI package ``liver-ct-segmentation-package==1.6.0``. Install it with
``pip install --no-deps liver-ct-segmentation-package==1.6.0`` (its declared dependencies pin
an ancient torch).

Example:
    >>> sample = load_lits117()  # doctest: +SKIP
    >>> sample.image.shape, sample.image.axcodes  # doctest: +SKIP
    ((128, 128, 128), ('R', 'A', 'S'))
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syntumor_core.errors import SampleNotInstalledError, VolumeError
from syntumor_core.volume import Volume

__all__ = ["LITS117_SPACING_MM", "Sample", "available_samples", "load_lits117"]

logger = logging.getLogger(__name__)

LITS117_PACKAGE = "liver_ct_segmentation_package"
LITS117_INSTALL = "pip install --no-deps liver-ct-segmentation-package==1.6.0"

LITS117_SPACING_MM: float = 1.375
"""Isotropic voxel size assumed for LiTS case 117 (the files store none).

How it was chosen. The crop's liver labels hold 485,268 parenchyma voxels (label 1) and 130,083
tumor voxels (label 2), 615,351 in all. The liver touches every face of the 128³ crop over
small areas (at most 2,501 of a face's 16,384 voxels), so the crop is a tight box around the
liver that cuts off at most a thin rim. An adult liver is typically 1.2–1.8 L. At 1.375 mm
(2.60 mm³ per voxel) the whole liver with its tumors is 1.60 L and the parenchyma alone 1.26 L,
both inside that range; 1.5 mm would make the whole liver 2.08 L and 1.3 mm the parenchyma
1.07 L. Anatomy agrees to within about 20 %: the step from one intervertebral disc to the next
in the lower thoracic/upper lumbar spine (~23 voxels → 31 mm; typical 28–34 mm), the aorta
(~11 voxels → 15 mm; typical 15–22 mm) and the width of a vertebral body (~36 voxels → 50 mm;
typical 40–48 mm) point to 1.1–1.9 mm. 1.375 = 11/8 is exact in float32, so the sample's
affine survives a NIfTI round trip bit for bit. Volumes and diameters measured on this sample
carry an uncertainty of roughly ±15 % in length; the true grid may not even be isotropic (a
box around the liver may have been resampled to 128³ per axis). Treat the sample as a
realistic demonstration, not as a calibrated measurement.
"""

_HEADER_BYTES = 1024
_SHAPE = (128, 128, 128)
_MRC_MODES = {2: np.dtype("<f4"), 6: np.dtype("<u2")}

_LICENCE_NOTE = (
    "LiTS (Liver Tumor Segmentation Challenge) data; its terms are usually cited as "
    "non-commercial research use. Loaded at run time from the installed package; never copy "
    "the data, or files derived from it, into the repository or redistribute them."
)


@dataclass(frozen=True, eq=False)
class Sample:
    """A CT image with its label map and where they come from.

    Args:
        image: float32 HU volume.
        labels: uint8 label map on the same grid.
        name: short identifier, e.g. ``"lits117"``.
        source: where the data come from (package, files).
        licence_note: the terms and what may not be done with the data.
    """

    image: Volume
    labels: Volume
    name: str
    source: str
    licence_note: str


def available_samples() -> dict[str, str]:
    """Name → one-line description of each sample this module can load."""
    return {
        "lits117": "LiTS case 117: contrast CT, 128³ crop around the liver, liver and tumor "
        f"labels (needs `{LITS117_INSTALL}`)",
    }


def _lits117_folder() -> Path:
    """The package's data folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec(LITS117_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SampleNotInstalledError(
            f"the LiTS case 117 sample needs the package {LITS117_PACKAGE!r}; install it with "
            f"`{LITS117_INSTALL}`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    for name in ("img_117.mrc", "lab_117.mrc"):
        if not (folder / name).is_file():
            raise SampleNotInstalledError(
                f"{folder / name} is missing; reinstall with `{LITS117_INSTALL}`"
            )
    return folder


def _read_mrc(path: Path, dtype: np.dtype) -> np.ndarray:
    """Read a 128³ MRC volume as (section, row, column) = (C-order) numpy axes."""
    raw = path.read_bytes()
    header = np.frombuffer(raw[:_HEADER_BYTES], dtype="<i4")
    shape = tuple(int(n) for n in header[2::-1])  # (sections, rows, columns)
    mode, extended = int(header[3]), int(header[23])
    expected = _HEADER_BYTES + extended + int(np.prod(shape)) * dtype.itemsize
    if shape != _SHAPE or _MRC_MODES.get(mode) != dtype or len(raw) != expected:
        raise VolumeError(
            f"{path}: unexpected MRC layout (shape {shape}, mode {mode}, {len(raw)} bytes); "
            f"expected {_SHAPE} of {dtype} in {expected} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=_HEADER_BYTES + extended).reshape(shape)


def _to_ras(array: np.ndarray) -> np.ndarray:
    """Flip the file's (left→, posterior→, superior→) axes into RAS+ order.

    Read in C order, the file's axes run towards the patient's left (axis 0), posterior
    (axis 1) and superior (axis 2, the axial axis: MRC's fastest "column" axis, i.e. axis 0
    in the file's own x, y, z numbering). This was decided on the images: on axial slices
    (fixed axis 2) the spinous processes lie at high axis-1 indices and the anterior
    abdominal wall at low ones; the liver and right kidney lie at low axis-0 indices and the
    spine and the aorta (left of the vertebral body) at high ones; the lung bases
    fill the top (high axis-2) slices and contrast-filled bowel the bottom ones, with the
    kidney below the liver on coronal views. Flipping axes 0 and 1 gives R, A, S. Two flips
    make a rotation, not a mirror image, so the anatomy keeps its handedness.
    """
    return np.ascontiguousarray(array[::-1, ::-1, :])


def load_lits117() -> Sample:
    """Load LiTS case 117 (image in HU, labels 0 background, 1 liver, 2 tumor) in RAS+.

    Both volumes are 128³ with the isotropic spacing :data:`LITS117_SPACING_MM` (an estimate:
    see there) and the origin at voxel (0, 0, 0). Nothing is cached.

    Raises:
        SampleNotInstalledError: the package is missing; the message gives the install command.
        VolumeError: the package's files do not have the expected layout.
    """
    folder = _lits117_folder()
    image = _to_ras(_read_mrc(folder / "img_117.mrc", np.dtype("<f4"))).astype(np.float32)
    labels = _to_ras(_read_mrc(folder / "lab_117.mrc", np.dtype("<u2")))
    if labels.max() > 2:
        raise VolumeError(f"{folder}: lab_117.mrc holds labels above 2 ({labels.max()})")
    affine = np.diag([LITS117_SPACING_MM] * 3 + [1.0])
    logger.debug("loaded LiTS case 117 from %s", folder)
    return Sample(
        image=Volume(image, affine),
        labels=Volume(labels.astype(np.uint8), affine.copy()),
        name="lits117",
        source=(
            "LiTS case 117, 128³ crop around the liver, from the PyPI package "
            f"liver-ct-segmentation-package 1.6.0 ({folder})"
        ),
        licence_note=_LICENCE_NOTE,
    )
