"""DICOM-SEG of a liver/tumor label map, referencing the DICOM series it was computed from.

The uploaded zip is kept beside the NIfTI made from it (see :mod:`app.volumes.storage`). For a
segmentation of such an image, :func:`write_dicom_seg` reads the zip's datasets again (headers
only), picks the series the core picked (the one with most slices) in the core's slice order
(increasing position along the slice normal), checks that the label map lies on exactly that
grid, and writes a binary DICOM Segmentation (highdicom) with two segments, liver (label 1)
and tumor (label 2), whose frames reference the source images.

The core's array axes for a series are (column, row, slice) with a LPS→RAS affine; a frame of
a segmentation is (row, column) for one source image, so the label map is transposed to
(slice, row, column).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes

from syntumor_core.volume import Volume, read_zip_members

logger = logging.getLogger(__name__)

LIVER_LABEL, TUMOR_LABEL = 1, 2
GEOMETRY_TOLERANCE_MM = 1e-2
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_MEMBERS = 20_000
MAX_RATIO = 100.0
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SOFTWARE_VERSION = "0.1.0"


class DicomSegError(ValueError):
    """A DICOM-SEG cannot be made for this series and label map (the message says why)."""


@dataclass(frozen=True)
class SourceSeries:
    """The source images of one series in the core's slice order, and the grid's affine.

    Args:
        datasets: pydicom headers (no pixel data), one per slice, ordered along the normal.
        affine: voxel-to-world matrix (RAS+, mm) of the (column, row, slice) array.
    """

    datasets: list[pydicom.Dataset]
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        first = self.datasets[0]
        return int(first.Columns), int(first.Rows), len(self.datasets)


def read_source_series(dicom_zip_path: Path) -> SourceSeries:
    """The largest series of a DICOM zip, sorted as :func:`load_dicom_series` sorts it.

    Raises:
        DicomSegError: no image slices, or fewer than two.
    """
    members = read_zip_members(
        dicom_zip_path, max_total_bytes=MAX_UNPACKED_BYTES, max_members=MAX_MEMBERS,
        max_ratio=MAX_RATIO,
    )  # fmt: skip
    by_series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for _name, content in members:
        try:
            dataset = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError, OSError):
            continue
        if "ImagePositionPatient" in dataset and "ImageOrientationPatient" in dataset:
            by_series[str(dataset.get("SeriesInstanceUID", ""))].append(dataset)
    if not by_series:
        raise DicomSegError(f"{dicom_zip_path.name}: no DICOM image slices found")
    uid = max(sorted(by_series), key=lambda key: len(by_series[key]))
    datasets = by_series[uid]
    if len(datasets) < 2:
        raise DicomSegError(f"{dicom_zip_path.name}: the series has fewer than two slices")
    return _sorted_series(datasets)


def _sorted_series(datasets: list[pydicom.Dataset]) -> SourceSeries:
    cosines = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    along_row = cosines[:3] / np.linalg.norm(cosines[:3])
    along_column = cosines[3:] / np.linalg.norm(cosines[3:])
    normal = np.cross(along_row, along_column)
    normal /= np.linalg.norm(normal)
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    distances = positions @ normal
    step = (distances[-1] - distances[0]) / (len(distances) - 1)
    row_spacing, column_spacing = (float(v) for v in datasets[0].PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = along_row * column_spacing
    lps[:3, 1] = along_column * row_spacing
    lps[:3, 2] = normal * step
    lps[:3, 3] = positions[0]
    return SourceSeries([datasets[i] for i in order], _LPS_TO_RAS @ lps)


def check_grid(series: SourceSeries, labels: Volume) -> None:
    """Refuse a label map that is not on the series' grid (shape and affine)."""
    if tuple(labels.shape) != series.shape:
        raise DicomSegError(
            f"the label map has shape {labels.shape} but the DICOM series is "
            f"{series.shape} (columns, rows, slices)"
        )
    difference = np.abs(np.asarray(labels.affine, dtype=np.float64) - series.affine).max()
    if difference > GEOMETRY_TOLERANCE_MM:
        raise DicomSegError(
            f"the label map's affine differs from the DICOM series' by up to {difference:.3g} "
            f"mm (tolerance {GEOMETRY_TOLERANCE_MM} mm): it is not on the series' grid"
        )


def _segment(number: int, label: str, category, kind, algorithm) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )


def segment_descriptions(model_name: str) -> list[hd.seg.SegmentDescription]:
    """Liver (segment 1) and tumor (segment 2), made by the named model."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"SynTumor {model_name}"[:64],
        family=codes.DCM.ArtificialIntelligence,
        version=SOFTWARE_VERSION,
    )
    return [
        _segment(LIVER_LABEL, "Liver", codes.SCT.AnatomicalStructure, codes.SCT.Liver, algorithm),
        _segment(
            TUMOR_LABEL,
            "Liver tumor",
            codes.SCT.MorphologicallyAbnormalStructure,
            codes.SCT.Neoplasm,
            algorithm,
        ),
    ]


def write_dicom_seg(
    dicom_zip_path: Path, labels: Volume, out_path: Path, *, model_name: str = "demo"
) -> Path:
    """Write a binary DICOM-SEG (liver, tumor) of ``labels`` referencing the zip's series.

    Args:
        dicom_zip_path: the zip of the DICOM series the label map was computed from.
        labels: label map (0 background, 1 liver, 2 tumor) on the series' grid, as the core
            returns it for that series: axes (column, row, slice), RAS+ affine in mm.
        out_path: the ``.dcm`` file to write (its folder must exist).
        model_name: the segmentation model, recorded as the algorithm's name.

    Returns:
        ``out_path``.

    Raises:
        DicomSegError: the zip holds no usable series, or the label map is on another grid.
        ValueError: highdicom refused the source images (e.g. required attributes missing).
    """
    series = read_source_series(Path(dicom_zip_path))
    check_grid(series, labels)
    frames = np.transpose(np.asarray(labels.array), (2, 1, 0))  # (slice, row, column)
    frames = np.where(np.isin(frames, (LIVER_LABEL, TUMOR_LABEL)), frames, 0).astype(np.uint8)
    source = series.datasets[0]
    segmentation = hd.seg.Segmentation(
        source_images=series.datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(model_name),
        series_instance_uid=hd.UID(),
        series_number=_series_number(source),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="SynTumor",
        manufacturer_model_name=f"SynTumor {model_name}"[:64],
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        series_description="Liver and tumor (SynTumor)",
    )
    out_path = Path(out_path)
    segmentation.save_as(out_path)
    logger.info("DICOM-SEG with %d frames written to %s", segmentation.NumberOfFrames, out_path)
    return out_path


def _series_number(source: pydicom.Dataset) -> int:
    """A series number near the source's (DICOM-SEG series are usually numbered after it)."""
    try:
        return int(source.get("SeriesNumber", 0) or 0) + 1000
    except (TypeError, ValueError):
        return 1000
