"""Per-lesion statistics of a CT with a lesion label map (issue 16: realism you can measure).

Definitions (the same for real and synthetic lesions, so the two can be compared):

- **Lesion**: a 26-connected component of ``label == tumor_value``.
- **Contrast** (HU): mean HU of a 3-voxel ring of organ parenchyma around the lesion minus the
  lesion's mean HU. The ring is the lesion dilated 3 times with the 6-neighbour (face)
  structuring element, restricted to ``label == organ_value`` (so it never holds tumor, the
  lesion itself or anything outside the organ). Positive = the lesion is darker than the organ,
  as hypo-attenuating liver tumors are. NaN when the ring is empty.
- **Sphericity**: ``π^(1/3) (6 V)^(2/3) / A`` with the volume ``V`` and area ``A`` of the
  marching-cubes surface (level 0.5 of the binary lesion mask, voxel spacing applied), as in
  pyradiomics' ``Sphericity``. 1 for a perfect sphere; a voxelised sphere of radius 8 voxels
  gives about 0.92 (the mesh's facets add area), a cube about 0.85 and thin or ragged shapes
  less.
- **Roughness**: the coefficient of variation (std / mean) of the surface vertices' distances
  from the lesion's centroid after the lesion is whitened by its inertia ellipsoid (the voxel
  coordinates' covariance, in mm). Whitening removes size and elongation, so any ellipsoid
  scores about 0 and what remains is lobulation, bumps and clipping: a voxelised sphere of
  radius 8 voxels scores about 0.02–0.04, a lesion with lobes or cut flat by the organ's
  boundary 0.1 and more. Lesions of fewer than 8 voxels get NaN (their covariance is degenerate).

Example:
    >>> import numpy as np
    >>> label = np.ones((24, 24, 24), np.uint8); image = np.full(label.shape, 100, np.float32)
    >>> zz, yy, xx = np.mgrid[:24, :24, :24]
    >>> ball = (zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 <= 36
    >>> label[ball] = 2; image[ball] = 60
    >>> [round(s.contrast_hu, 1) for s in measure_lesions(image, label, spacing=1.0)]
    [40.0]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from syntumor_core.errors import MaskError, ParameterError, VolumeError

__all__ = [
    "RING_ITERATIONS",
    "LesionCrop",
    "LesionStats",
    "crop_lesions",
    "lesion_components",
    "lesion_stats",
    "measure_lesions",
    "surface_shape",
]

logger = logging.getLogger(__name__)

RING_ITERATIONS = 3
"""Width of the parenchyma ring in 6-neighbour dilation steps (voxels)."""

_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)
_MIN_VOXELS_FOR_ROUGHNESS = 8


@dataclass(frozen=True)
class LesionStats:
    """The statistics of one lesion (see the module docstring for the definitions).

    Attributes:
        voxels: number of voxels in the component.
        volume_ml: voxels × voxel volume, in millilitres.
        mean_hu: mean HU over the lesion's voxels.
        contrast_hu: ring mean HU − lesion mean HU (NaN without a ring).
        ring_voxels: number of voxels in the parenchyma ring.
        sphericity: marching-cubes sphericity in (0, 1].
        roughness: whitened radial coefficient of variation (≥ 0; NaN under 8 voxels).
        centroid: the lesion's centroid in voxel indices.
    """

    voxels: int
    volume_ml: float
    mean_hu: float
    contrast_hu: float
    ring_voxels: int
    sphericity: float
    roughness: float
    centroid: tuple[float, float, float]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        record = asdict(self)
        record["centroid"] = list(self.centroid)
        return record


def _spacing3(spacing) -> tuple[float, float, float]:
    values = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ParameterError(f"`spacing` must be three positive mm values, got {spacing!r}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def lesion_components(
    label: np.ndarray, *, tumor_value: int = 2, min_voxels: int = 0
) -> tuple[np.ndarray, list[tuple[int, tuple[slice, ...], int]]]:
    """26-connected lesion components: the component map and (index, box, voxels) per lesion.

    Lesions are sorted by size, largest first; those under ``min_voxels`` are left out of the
    list (they keep their index in the map).
    """
    components, count = ndimage.label(label == tumor_value, structure=_CONNECTIVITY_26)
    if count == 0:
        return components, []
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    boxes = ndimage.find_objects(components)
    lesions = [
        (index, boxes[index - 1], int(sizes[index]))
        for index in range(1, count + 1)
        if sizes[index] >= max(1, min_voxels)
    ]
    lesions.sort(key=lambda item: (-item[2], item[0]))
    return components, lesions


def _padded(box: Sequence[slice], pad: int, shape) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, shape, strict=True)
    )


def surface_shape(mask: np.ndarray, spacing) -> tuple[float, float]:
    """(sphericity, roughness) of one binary object (see the module docstring)."""
    from skimage.measure import marching_cubes, mesh_surface_area

    spacing = _spacing3(spacing)
    padded = np.pad(mask.astype(np.float32), 1)
    vertices, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing)
    area = float(mesh_surface_area(vertices, faces))
    triangles = vertices[faces]
    volume = abs(
        float(
            np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])).sum()
        )
        / 6.0
    )
    sphericity = float(np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area) if area > 0 else np.nan
    return sphericity, _roughness(padded > 0.5, vertices, spacing)


def _roughness(mask: np.ndarray, vertices: np.ndarray, spacing) -> float:
    points = np.argwhere(mask) * np.asarray(spacing)
    if len(points) < _MIN_VOXELS_FOR_ROUGHNESS:
        return float("nan")
    centroid = points.mean(axis=0)
    covariance = np.cov(points - centroid, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    if eigenvalues.min() <= 1e-9:
        return float("nan")
    whitened = (vertices - centroid) @ eigenvectors / np.sqrt(eigenvalues)
    radii = np.linalg.norm(whitened, axis=1)
    return float(radii.std() / radii.mean())


@dataclass(frozen=True, eq=False)
class LesionCrop:
    """One lesion cut out of its scan: the box around it grown by the ring width + 1 voxel.

    Attributes:
        image: the HU values in the box (float32).
        lesion: the lesion's voxels in the box.
        organ: the organ parenchyma (``label == organ_value``) in the box.
        spacing: voxel size in mm per axis.
        offset: the box's first voxel in the scan's indices.
    """

    image: np.ndarray
    lesion: np.ndarray
    organ: np.ndarray
    spacing: tuple[float, float, float]
    offset: tuple[int, int, int]


def lesion_stats(crop: LesionCrop) -> LesionStats:
    """The statistics of one cut-out lesion (the crop must hold the whole ring)."""
    values = crop.image[crop.lesion].astype(np.float64)
    grown = ndimage.binary_dilation(
        crop.lesion, structure=_FACE_NEIGHBOURS, iterations=RING_ITERATIONS
    )
    ring = grown & crop.organ & ~crop.lesion
    ring_voxels = int(np.count_nonzero(ring))
    mean_hu = float(values.mean())
    contrast = float(crop.image[ring].mean(dtype=np.float64) - mean_hu) if ring_voxels else np.nan
    sphericity, roughness = surface_shape(crop.lesion, crop.spacing)
    centroid = np.argwhere(crop.lesion).mean(axis=0) + np.asarray(crop.offset, dtype=float)
    voxels = int(values.size)
    return LesionStats(
        voxels=voxels,
        volume_ml=voxels * float(np.prod(crop.spacing)) / 1000.0,
        mean_hu=mean_hu,
        contrast_hu=contrast,
        ring_voxels=ring_voxels,
        sphericity=sphericity,
        roughness=roughness,
        centroid=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
    )


def crop_lesions(
    image: np.ndarray,
    label: np.ndarray,
    *,
    spacing,
    organ_value: int = 1,
    tumor_value: int = 2,
    min_voxels: int = 0,
) -> list[LesionCrop]:
    """Cut every lesion of ``label`` with at least ``min_voxels`` voxels out of ``image``.

    Largest first; arguments as for :func:`measure_lesions`.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 3 or image.shape != label.shape:
        raise VolumeError(
            f"image and label must be 3-D of one shape, got {image.shape} and {label.shape}"
        )
    if organ_value == tumor_value:
        raise MaskError(f"`organ_value` and `tumor_value` must differ, both are {organ_value}")
    if min_voxels < 0:
        raise ParameterError(f"`min_voxels` must be ≥ 0, got {min_voxels}")
    spacing = _spacing3(spacing)
    components, lesions = lesion_components(label, tumor_value=tumor_value, min_voxels=min_voxels)
    crops = []
    for index, box, _ in lesions:
        box = _padded(box, RING_ITERATIONS + 1, label.shape)
        crops.append(
            LesionCrop(
                image=image[box].astype(np.float32),
                lesion=components[box] == index,
                organ=label[box] == organ_value,
                spacing=spacing,
                offset=tuple(s.start for s in box),  # type: ignore[arg-type]
            )
        )
    return crops


def measure_lesions(
    image: np.ndarray,
    label: np.ndarray,
    *,
    spacing,
    organ_value: int = 1,
    tumor_value: int = 2,
    min_voxels: int = 0,
) -> list[LesionStats]:
    """Measure every lesion of ``label`` on ``image``, largest first.

    Args:
        image: 3-D CT in HU.
        label: label map of the same shape (``organ_value`` parenchyma, ``tumor_value`` lesion).
        spacing: voxel size in mm, one value or one per axis.
        organ_value: the parenchyma label the contrast ring is restricted to.
        tumor_value: the lesion label.
        min_voxels: leave out lesions with fewer voxels.

    Returns:
        One :class:`LesionStats` per lesion with at least ``min_voxels`` voxels, largest first.
    """
    crops = crop_lesions(
        image,
        label,
        spacing=spacing,
        organ_value=organ_value,
        tumor_value=tumor_value,
        min_voxels=min_voxels,
    )
    stats = [lesion_stats(crop) for crop in crops]
    logger.debug("measured %d lesions", len(stats))
    return stats
