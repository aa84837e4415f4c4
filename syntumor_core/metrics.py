"""Segmentation evaluation: Dice, normalised surface Dice (NSD) and lesion-wise detection.

What the published evaluation scores, per case and per structure (liver, tumor):

- **Dice** ``2|P∩G| / (|P| + |G|)`` on binary masks.
- **NSD** at 2 mm: the share of both boundaries lying within the tolerance of the other
  boundary, distances in mm from the voxel spacing. The authors used DeepMind's
  ``surface_distance`` (boundary elements weighted by their surface area); the default here,
  MONAI's ``compute_surface_dice(..., use_subvoxels=True)``, follows that definition.

Empty masks, exactly: prediction and truth both empty → ``empty_value`` (NaN by default, as in
the original, whose plain ``np.mean`` over cases then turns the average into NaN; pass
``empty_value=1.0`` to score "both empty" as perfect, or average with ``np.nanmean`` to skip
such cases). Exactly one of them empty → Dice 0 and NSD 0.

Lesion-wise detection (the authors' described procedure; their code was never released):
lesions are connected components of the truth tumor mask (26-connectivity by default), sized by
the radius of the sphere of equal volume, ``r = (3V / 4π)^(1/3)`` with ``V`` in mm³, and binned
by :data:`SIZE_BINS_MM`. A truth lesion is *detected* when any predicted tumor voxel lies in it;
a predicted component that touches no truth tumor voxel is a *false positive*.

Example:
    >>> truth = np.zeros((8, 8, 8), bool); truth[2:5, 2:5, 2:5] = True
    >>> pred = np.roll(truth, 1, axis=0)
    >>> round(dice(pred, truth), 4)
    0.6667
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_surface_dice
from scipy import ndimage

from syntumor_core.errors import MaskError, ParameterError

SIZE_BINS_MM = ((0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, 20.0), (20.0, math.inf))
"""Lesion size bins by equivalent-sphere radius in mm; each bin is ``[low, high)``."""

CONNECTIVITIES: dict[int, int] = {6: 1, 18: 2, 26: 3}
"""Neighbourhood size (faces / + edges / + corners) → ``scipy.ndimage`` structure rank."""


def _binary_mask(name: str, mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` as a bool array; refuse anything but bool or 0/1 values."""
    array = np.asarray(mask)
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise MaskError(f"{name} must be a bool or 0/1 array, got dtype {array.dtype}")
    bad = (array != 0) & (array != 1)
    if bad.any():
        examples = np.unique(array[bad])[:5].tolist()
        raise MaskError(
            f"{name} must be binary (bool or 0/1), got other values such as {examples}; "
            f"pass e.g. labels == 2 for a label map"
        )
    return array.astype(bool)


def _mask_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred_mask, truth_mask = _binary_mask("pred", pred), _binary_mask("truth", truth)
    if pred_mask.shape != truth_mask.shape:
        raise MaskError(
            f"pred and truth must have the same shape, got {pred_mask.shape} and {truth_mask.shape}"
        )
    return pred_mask, truth_mask


def _spacing_mm(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ParameterError(
            f"spacing must be {ndim} finite positive numbers (mm per axis), got {tuple(spacing)}"
        )
    return values


def dice(pred: np.ndarray, truth: np.ndarray, *, empty_value: float = float("nan")) -> float:
    """Dice coefficient ``2|P∩G| / (|P| + |G|)`` of two binary masks.

    Counted exactly with integers in numpy rather than with MONAI's ``compute_dice``, whose
    ``ignore_empty=True`` gives NaN whenever the truth is empty, even for a non-empty
    prediction (here: 0), and which works in float32.

    Args:
        pred: predicted mask, bool or 0/1, any shape.
        truth: reference mask of the same shape.
        empty_value: the score when both masks are empty (NaN by default, as the original).

    Returns:
        Dice in [0, 1]; 0 when exactly one mask is empty; ``empty_value`` when both are.
    """
    pred_mask, truth_mask = _mask_pair(pred, truth)
    total = int(np.count_nonzero(pred_mask)) + int(np.count_nonzero(truth_mask))
    if total == 0:
        return float(empty_value)
    return 2.0 * int(np.count_nonzero(pred_mask & truth_mask)) / total


def _union_crop(pred: np.ndarray, truth: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the union's bounding box grown by ``margin`` voxels, clipped to the array."""
    union = pred | truth
    slices = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(union.any(axis=others))
        start = max(int(present[0]) - margin, 0)
        stop = min(int(present[-1]) + 1 + margin, union.shape[axis])
        slices.append(slice(start, stop))
    return tuple(slices)


def nsd(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    *,
    tolerance_mm: float = 2.0,
    empty_value: float = float("nan"),
    use_subvoxels: bool = True,
) -> float:
    """Normalised surface Dice of two binary masks at ``tolerance_mm``.

    Computed by MONAI's ``compute_surface_dice`` with ``class_thresholds=[tolerance_mm]`` and
    the voxel ``spacing`` (distances in mm). Both masks are first cropped to the bounding box of
    their union plus one voxel — the crop MONAI makes itself — so that big volumes are never
    converted to tensors whole; the score is unchanged.

    Args:
        pred: predicted mask, bool or 0/1, 2-D or 3-D.
        truth: reference mask of the same shape.
        spacing: voxel size in mm along each array axis.
        tolerance_mm: boundary deviation still counted as correct, in mm (>= 0).
        empty_value: the score when both masks are empty (NaN by default, as the original).
        use_subvoxels: weight boundary elements by their surface area on the voxel-corner grid
            (DeepMind's definition, which the published numbers used). ``False`` counts boundary
            voxels instead (``binary_erosion`` edges) and gives different numbers.

    Returns:
        NSD in [0, 1]; 0 when exactly one mask is empty; ``empty_value`` when both are.
    """
    pred_mask, truth_mask = _mask_pair(pred, truth)
    if pred_mask.ndim not in (2, 3):
        raise MaskError(f"nsd needs 2-D or 3-D masks, got shape {pred_mask.shape}")
    spacing_mm = _spacing_mm(spacing, pred_mask.ndim)
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ParameterError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm}")
    pred_any, truth_any = bool(pred_mask.any()), bool(truth_mask.any())
    if not pred_any and not truth_any:
        return float(empty_value)
    if not pred_any or not truth_any:
        return 0.0
    box = _union_crop(pred_mask, truth_mask, margin=1)
    pred_tensor = torch.from_numpy(np.ascontiguousarray(pred_mask[box]))[None, None]
    truth_tensor = torch.from_numpy(np.ascontiguousarray(truth_mask[box]))[None, None]
    with warnings.catch_warnings():
        # MONAI 1.5-1.6 warns about its own internal use of a deprecated argument.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
        score = compute_surface_dice(
            pred_tensor,
            truth_tensor,
            class_thresholds=[float(tolerance_mm)],
            include_background=True,
            spacing=list(spacing_mm),
            use_subvoxels=use_subvoxels,
        )
    return float(score.reshape(-1)[0])


def equivalent_radius_mm(volume_mm3: float) -> float:
    """Radius in mm of the sphere whose volume is ``volume_mm3``: ``(3V / 4π)^(1/3)``."""
    return (3.0 * float(volume_mm3) / (4.0 * math.pi)) ** (1.0 / 3.0)


def size_bin_index(radius_mm: float) -> int:
    """Index of the :data:`SIZE_BINS_MM` bin (``[low, high)``) that holds ``radius_mm``."""
    for index, (low, high) in enumerate(SIZE_BINS_MM):
        if low <= radius_mm < high:
            return index
    raise ParameterError(f"radius_mm must be >= 0 and finite, got {radius_mm}")


def size_bin_name(size_bin: tuple[float, float]) -> str:
    """Short column-friendly name of a bin: ``"0to5mm"``, …, ``"20mm_up"``."""
    low, high = size_bin
    return f"{low:g}mm_up" if math.isinf(high) else f"{low:g}to{high:g}mm"


@dataclass(frozen=True)
class Lesion:
    """One connected component of a tumor mask.

    Args:
        label: the component's number (1, 2, …) in the labelled mask.
        voxels: its voxel count.
        volume_ml: its volume in millilitres (voxels × voxel volume / 1000).
        radius_mm: radius of the sphere of equal volume, in mm.
        centroid_voxel: its centre of mass in array index coordinates.
        size_bin: index of its bin in :data:`SIZE_BINS_MM`.
        overlapped: whether the other mask has a voxel inside it — for a truth lesion, that it
            was detected; for a predicted component, that it is not a false positive.
    """

    label: int
    voxels: int
    volume_ml: float
    radius_mm: float
    centroid_voxel: tuple[float, ...]
    size_bin: int
    overlapped: bool


@dataclass(frozen=True)
class DetectionResult:
    """Lesion-wise detection on one scan (see :func:`lesion_detection`).

    Args:
        truth_lesions: components of the truth tumor mask; ``overlapped`` means detected.
        predicted_lesions: components of the predicted mask; ``overlapped`` means matched.
        detected_per_bin: detected truth lesions per :data:`SIZE_BINS_MM` bin.
        total_per_bin: truth lesions per bin.
        false_positive_lesions: predicted components overlapping no truth tumor.
        scan_has_tumor: the truth has any tumor voxel.
        scan_predicted_tumor: the prediction has any tumor voxel.
        connectivity: 6, 18 or 26, the neighbourhood that defined components.
    """

    truth_lesions: tuple[Lesion, ...]
    predicted_lesions: tuple[Lesion, ...]
    detected_per_bin: tuple[int, ...]
    total_per_bin: tuple[int, ...]
    false_positive_lesions: int
    scan_has_tumor: bool
    scan_predicted_tumor: bool
    connectivity: int

    @property
    def lesions_detected(self) -> int:
        return sum(self.detected_per_bin)

    @property
    def lesions_total(self) -> int:
        return sum(self.total_per_bin)


def _components(
    mask: np.ndarray,
    other: np.ndarray,
    voxel_mm3: float,
    structure: np.ndarray,
) -> tuple[Lesion, ...]:
    """Connected components of ``mask``, each flagged by whether ``other`` overlaps it."""
    labels, count = ndimage.label(mask, structure=structure)
    if count == 0:
        return ()
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    overlaps = np.bincount(flat[other.ravel()], minlength=count + 1)
    indices = list(range(1, count + 1))
    centroids = ndimage.center_of_mass(mask, labels, indices)
    lesions = []
    for index, centroid in zip(indices, centroids, strict=True):
        voxels = int(sizes[index])
        radius = equivalent_radius_mm(voxels * voxel_mm3)
        lesions.append(
            Lesion(
                label=index,
                voxels=voxels,
                volume_ml=voxels * voxel_mm3 / 1000.0,
                radius_mm=radius,
                centroid_voxel=tuple(float(c) for c in centroid),
                size_bin=size_bin_index(radius),
                overlapped=bool(overlaps[index] > 0),
            )
        )
    return tuple(lesions)


def lesion_detection(
    pred_tumor: np.ndarray,
    truth_tumor: np.ndarray,
    spacing: Sequence[float],
    *,
    connectivity: int = 26,
) -> DetectionResult:
    """Lesion-wise detection of one scan's predicted tumor against its truth.

    Args:
        pred_tumor: predicted tumor mask (bool or 0/1), 3-D.
        truth_tumor: reference tumor mask of the same shape.
        spacing: voxel size in mm along each array axis (for volumes and radii).
        connectivity: voxels sharing a face (6), also an edge (18), or also a corner (26, the
            default) belong to the same lesion. Applies to truth and prediction alike.

    Returns:
        The lesions of both masks, per-bin counts of detected and total truth lesions, the
        number of false-positive predicted components and whether each mask has any tumor.
    """
    pred_mask, truth_mask = _mask_pair(pred_tumor, truth_tumor)
    if pred_mask.ndim != 3:
        raise MaskError(f"lesion_detection needs 3-D masks, got shape {pred_mask.shape}")
    if connectivity not in CONNECTIVITIES:
        raise ParameterError(f"connectivity must be one of 6, 18, 26, got {connectivity!r}")
    voxel_mm3 = math.prod(_spacing_mm(spacing, 3))
    structure = ndimage.generate_binary_structure(3, CONNECTIVITIES[connectivity])
    truth_lesions = _components(truth_mask, pred_mask, voxel_mm3, structure)
    predicted_lesions = _components(pred_mask, truth_mask, voxel_mm3, structure)
    detected = [0] * len(SIZE_BINS_MM)
    total = [0] * len(SIZE_BINS_MM)
    for lesion in truth_lesions:
        total[lesion.size_bin] += 1
        detected[lesion.size_bin] += int(lesion.overlapped)
    return DetectionResult(
        truth_lesions=truth_lesions,
        predicted_lesions=predicted_lesions,
        detected_per_bin=tuple(detected),
        total_per_bin=tuple(total),
        false_positive_lesions=sum(not lesion.overlapped for lesion in predicted_lesions),
        scan_has_tumor=bool(truth_mask.any()),
        scan_predicted_tumor=bool(pred_mask.any()),
        connectivity=connectivity,
    )


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


@dataclass(frozen=True)
class DetectionSummary:
    """Detection over many scans (see :func:`summarize_detection`). Rates are NaN when their
    denominator is 0.

    Args:
        scans: number of scans summarised.
        detected_per_bin: detected truth lesions per :data:`SIZE_BINS_MM` bin, all scans.
        total_per_bin: truth lesions per bin, all scans.
        sensitivity_per_bin: detected / total per bin.
        lesions_detected: detected truth lesions, all bins.
        lesions_total: truth lesions, all bins.
        lesion_sensitivity: lesions_detected / lesions_total.
        false_positive_lesions: false-positive predicted components, all scans.
        false_positives_per_scan: false_positive_lesions / scans (mean over all scans).
        tumor_free_scans: scans whose truth has no tumor.
        tumor_free_scans_without_prediction: of those, scans with no predicted tumor.
        patient_specificity: tumor_free_scans_without_prediction / tumor_free_scans.
        tumor_scans: scans whose truth has tumor.
        tumor_scans_with_prediction: of those, scans with any predicted tumor (anywhere).
        patient_sensitivity: tumor_scans_with_prediction / tumor_scans.
    """

    scans: int
    detected_per_bin: tuple[int, ...]
    total_per_bin: tuple[int, ...]
    sensitivity_per_bin: tuple[float, ...]
    lesions_detected: int
    lesions_total: int
    lesion_sensitivity: float
    false_positive_lesions: int
    false_positives_per_scan: float
    tumor_free_scans: int
    tumor_free_scans_without_prediction: int
    patient_specificity: float
    tumor_scans: int
    tumor_scans_with_prediction: int
    patient_sensitivity: float


def summarize_detection(results: Sequence[DetectionResult]) -> DetectionSummary:
    """Pool per-scan detection results into per-bin and patient-level rates.

    Args:
        results: one :class:`DetectionResult` per scan. An empty sequence gives zero counts
            and NaN rates.

    Returns:
        The pooled counts and rates; see :class:`DetectionSummary`.
    """
    detected = tuple(sum(r.detected_per_bin[i] for r in results) for i in range(len(SIZE_BINS_MM)))
    total = tuple(sum(r.total_per_bin[i] for r in results) for i in range(len(SIZE_BINS_MM)))
    false_positives = sum(r.false_positive_lesions for r in results)
    tumor_free = [r for r in results if not r.scan_has_tumor]
    with_tumor = [r for r in results if r.scan_has_tumor]
    free_clean = sum(not r.scan_predicted_tumor for r in tumor_free)
    tumor_flagged = sum(r.scan_predicted_tumor for r in with_tumor)
    return DetectionSummary(
        scans=len(results),
        detected_per_bin=detected,
        total_per_bin=total,
        sensitivity_per_bin=tuple(_ratio(d, t) for d, t in zip(detected, total, strict=True)),
        lesions_detected=sum(detected),
        lesions_total=sum(total),
        lesion_sensitivity=_ratio(sum(detected), sum(total)),
        false_positive_lesions=false_positives,
        false_positives_per_scan=_ratio(false_positives, len(results)),
        tumor_free_scans=len(tumor_free),
        tumor_free_scans_without_prediction=free_clean,
        patient_specificity=_ratio(free_clean, len(tumor_free)),
        tumor_scans=len(with_tumor),
        tumor_scans_with_prediction=tumor_flagged,
        patient_sensitivity=_ratio(tumor_flagged, len(with_tumor)),
    )


def evaluate_case(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing: Sequence[float],
    *,
    liver_label: int = 1,
    tumor_label: int = 2,
    liver_includes_tumor: bool = False,
    tolerance_mm: float = 2.0,
    empty_value: float = float("nan"),
    connectivity: int = 26,
) -> dict[str, float | int | bool]:
    """All per-case scores of one scan as a flat, CSV-ready row.

    Args:
        pred_labels: predicted label map (0 background, 1 liver, 2 tumor), 3-D.
        truth_labels: reference label map of the same shape.
        spacing: voxel size in mm along each array axis (of the label's grid).
        liver_label: value of liver voxels.
        tumor_label: value of tumor voxels.
        liver_includes_tumor: score the liver as liver ∪ tumor (the LiTS convention). The
            original scores the liver label alone (``False``, the default).
        tolerance_mm: NSD tolerance in mm.
        empty_value: Dice/NSD when prediction and truth of a structure are both empty.
        connectivity: 6, 18 or 26, for the lesion components.

    Returns:
        ``liver_dice, liver_nsd, tumor_dice, tumor_nsd`` (the original's columns, in order),
        then ``tumor_lesions, tumor_lesions_detected, false_positive_lesions, scan_has_tumor,
        scan_predicted_tumor`` and ``lesions_<bin>, detected_<bin>`` per radius bin (bin names
        from :func:`size_bin_name`, e.g. ``lesions_0to5mm``). Add the case name yourself.
    """
    pred = np.asarray(pred_labels)
    truth = np.asarray(truth_labels)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise MaskError(
            f"pred_labels and truth_labels must be 3-D and of one shape, got {pred.shape} and "
            f"{truth.shape}"
        )
    liver_values = [liver_label, tumor_label] if liver_includes_tumor else [liver_label]
    pred_liver, truth_liver = np.isin(pred, liver_values), np.isin(truth, liver_values)
    pred_tumor, truth_tumor = pred == tumor_label, truth == tumor_label
    row: dict[str, float | int | bool] = {}
    for structure, pred_mask, truth_mask in (
        ("liver", pred_liver, truth_liver),
        ("tumor", pred_tumor, truth_tumor),
    ):
        row[f"{structure}_dice"] = dice(pred_mask, truth_mask, empty_value=empty_value)
        row[f"{structure}_nsd"] = nsd(
            pred_mask, truth_mask, spacing, tolerance_mm=tolerance_mm, empty_value=empty_value
        )
    detection = lesion_detection(pred_tumor, truth_tumor, spacing, connectivity=connectivity)
    row.update(
        tumor_lesions=detection.lesions_total,
        tumor_lesions_detected=detection.lesions_detected,
        false_positive_lesions=detection.false_positive_lesions,
        scan_has_tumor=detection.scan_has_tumor,
        scan_predicted_tumor=detection.scan_predicted_tumor,
    )
    for index, size_bin in enumerate(SIZE_BINS_MM):
        name = size_bin_name(size_bin)
        row[f"lesions_{name}"] = detection.total_per_bin[index]
        row[f"detected_{name}"] = detection.detected_per_bin[index]
    return row
