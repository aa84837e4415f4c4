"""Post-processing of a label map: the original clean-up, then the lesion filter.

1. :func:`postprocess` is the original's (``shared/spec/segmentation.md``), run on the input's
   grid: keep the largest 6-connected liver component; keep tumor only within 30 voxels of it
   (30 iterations of a 6-connected binary dilation); everything else becomes background.
2. After it, a network still lists single voxels and blobs beside the liver as lesions.
   :class:`~syntumor_core.segmentation.options.LesionFilter` holds three options, applied in
   this order:

   1. ``tumor_probability`` (default ``None``: off): a voxel is tumor where the network's
      softmax tumor probability is at least this, otherwise the likelier of liver and
      background (:func:`labels_from_probabilities`); ``None`` keeps the plain argmax.
   2. ``organ_contact`` (default ``True``): a tumor component (26-connected, as in the lesion
      table) is kept only if it lies inside the predicted liver or touches it (one of its
      voxels is a 26-neighbour of a liver voxel).
   3. ``min_volume_mm3`` (default
      :data:`~syntumor_core.segmentation.options.DEFAULT_MIN_LESION_MM3`, 50 mm³ = 0.05 ml: a
      sphere of 4.6 mm diameter, below the size at which liver lesions are usually
      reported): smaller tumor components are dropped.

   A dropped component becomes liver where it touches the liver (it was a speck inside it)
   and background elsewhere (:func:`filter_lesions`).

The filter's defaults were chosen with the demo model on LiTS case 117 and three tumor-free
held-out phantoms (``models/demo/evaluate_lesion_filter.py``; table in
``models/demo/MODEL_CARD.md``): of the minimum volumes tried (0, 50, 100, 200, 500 mm³), the
smallest that, with organ contact, brought LiTS-117 to at most 10 false-positive lesions at an
unchanged tumor Dice (31 → 6 false positives, 20 → 15 of 70 lesions found, all the lost ones
under 10 mm radius; 16 → 4 false positives per tumor-free phantom). A probability threshold of
0.6 or 0.7 cut the tumor Dice to 0.48 / 0.31 there, so it stays off by default.
:meth:`LesionFilter.as_dict` is what the segmentation sidecar records.

Example:
    >>> cleaned, report = filter_lesions(postprocess(labels), voxel_mm3=1.0, options=LesionFilter())  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from syntumor_core.errors import MaskError, ParameterError
from syntumor_core.segmentation.options import (
    LIVER_LABEL,
    LIVER_MARGIN_VOXELS,
    TUMOR_LABEL,
    LesionFilter,
)

_NEIGHBOURS = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity, as lesion_table


def check_label_map(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """``labels`` as an array if it is a 3-D integer map of 0, 1 (liver) and 2 (tumor).

    Raises:
        MaskError: another shape, dtype or label value.
    """
    array = np.asarray(labels)
    if array.ndim != 3:
        raise MaskError(f"{name} must be 3-D, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise MaskError(f"{name} must hold integer labels 0, 1, 2, got dtype {array.dtype}")
    unexpected = np.setdiff1d(np.unique(array), [0, LIVER_LABEL, TUMOR_LABEL])
    if unexpected.size:
        raise MaskError(
            f"{name} may hold only 0 (background), 1 (liver), 2 (tumor); got also "
            f"{unexpected[:5].tolist()}"
        )
    return array


def _within_margin(mask: np.ndarray, margin: int) -> np.ndarray:
    """``binary_dilation(mask, iterations=margin)`` (6-connected), computed on a crop.

    Voxels within ``margin`` 6-connected steps of ``mask`` are those at city-block distance
    <= margin, all inside the mask's bounding box grown by ``margin``; the distance transform
    of that crop gives the same set as the iterated dilation, much faster.
    """
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    crop = tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(box, mask.shape, strict=True)
    )
    distance = ndimage.distance_transform_cdt(~mask[crop], metric="taxicab")
    near = np.zeros(mask.shape, dtype=bool)
    near[crop] = distance <= margin
    return near


def postprocess(labels: np.ndarray, *, margin_voxels: int = LIVER_MARGIN_VOXELS) -> np.ndarray:
    """The original post-processing of a label map (0 background, 1 liver, 2 tumor).

    Keeps the largest 6-connected liver component (the first one on a tie) and the tumor
    voxels within ``margin_voxels`` 6-connected steps of it (the original's 30 iterations of
    ``scipy.ndimage.binary_dilation``); everything else becomes background. Without any liver,
    the result is all background.

    Args:
        labels: integer label map, 3-D, values 0, 1, 2.
        margin_voxels: dilation iterations (30 in the original).

    Returns:
        A new uint8 label map of the same shape.
    """
    array = check_label_map(labels)
    if isinstance(margin_voxels, bool) or not isinstance(margin_voxels, int) or margin_voxels < 0:
        raise ParameterError(f"margin_voxels must be an integer >= 0, got {margin_voxels!r}")
    result = np.zeros(array.shape, dtype=np.uint8)
    components, count = ndimage.label(array == LIVER_LABEL)  # default: 6-connectivity
    if count == 0:
        return result
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    liver = components == 1 + int(np.argmax(sizes[1:]))
    result[liver] = LIVER_LABEL
    result[(array == TUMOR_LABEL) & _within_margin(liver, margin_voxels)] = TUMOR_LABEL
    return result


def labels_from_probabilities(probabilities: np.ndarray, tumor_probability: float) -> np.ndarray:
    """Labels from softmax probabilities (background, liver, tumor on axis 0): tumor where its
    probability is at least ``tumor_probability``, otherwise the likelier of the other two."""
    array = np.asarray(probabilities)
    if array.ndim != 4 or array.shape[0] != 3:
        raise MaskError(f"probabilities must have shape (3, X, Y, Z), got {array.shape}")
    labels = (array[LIVER_LABEL] > array[0]).astype(np.uint8)
    labels[array[TUMOR_LABEL] >= tumor_probability] = TUMOR_LABEL
    return labels


def filter_lesions(
    labels: np.ndarray, voxel_mm3: float, options: LesionFilter
) -> tuple[np.ndarray, dict[str, int]]:
    """Drop tumor components that are too small or away from the liver.

    Args:
        labels: label map (0 background, 1 liver, 2 tumor), 3-D.
        voxel_mm3: the volume of one voxel in mm³.
        options: what to keep (its ``tumor_probability`` is applied before, when the
            probabilities are at hand: :func:`labels_from_probabilities`).

    Returns:
        A new uint8 label map, and counts: ``lesions_in``, ``removed_small``,
        ``removed_outside_organ``.
    """
    array = np.asarray(labels)
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.integer):
        raise MaskError(f"labels must be a 3-D integer label map, got {array.dtype} {array.shape}")
    if not voxel_mm3 > 0:
        raise ParameterError(f"voxel_mm3 must be > 0, got {voxel_mm3!r}")
    result = array.astype(np.uint8, copy=True)
    components, count = ndimage.label(result == TUMOR_LABEL, structure=_NEIGHBOURS)
    report = {"lesions_in": int(count), "removed_small": 0, "removed_outside_organ": 0}
    if count == 0:
        return result, report
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    liver = result == LIVER_LABEL
    near_liver = ndimage.binary_dilation(liver, structure=_NEIGHBOURS) if liver.any() else liver
    touching = np.bincount(components[near_liver].ravel(), minlength=count + 1) > 0
    small = sizes * voxel_mm3 < options.min_volume_mm3
    outside = ~touching if options.organ_contact else np.zeros(count + 1, dtype=bool)
    dropped = small | outside
    dropped[0] = False
    report["removed_outside_organ"] = int(outside[1:].sum())
    report["removed_small"] = int((small & ~outside)[1:].sum())
    becomes = np.where(touching, LIVER_LABEL, 0).astype(np.uint8)
    where = dropped[components]
    result[where] = becomes[components[where]]
    return result, report
