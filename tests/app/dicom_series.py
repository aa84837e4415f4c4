"""Synthetic CT series as DICOM files in a zip, made with pydicom from a phantom.

The slices carry what a scanner's export carries for geometry and identity (CT Image Storage,
patient/study/series/frame-of-reference UIDs, ImagePositionPatient, ImageOrientationPatient,
PixelSpacing, SliceThickness, rescale to HU), so the core reads them back as the phantom's
array and affine, and highdicom accepts them as source images of a segmentation.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

RESCALE_INTERCEPT = -1024.0
# Array axis 0 (DICOM column index) runs to patient right, axis 1 (row index) to anterior:
# LPS direction cosines (-1, 0, 0) and (0, -1, 0), so the core's RAS affine is diagonal.
ORIENTATION = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]


def _identity(series_uid: str, study_uid: str, frame_uid: str) -> Dataset:
    ds = Dataset()
    ds.PatientName = "Phantom^Synthetic"
    ds.PatientID = "PHANTOM-001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 3
    ds.SeriesDescription = "synthetic abdomen"
    ds.Modality = "CT"
    ds.Manufacturer = "SynTumor tests"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    return ds


def _slice(pixels_hu: np.ndarray, index: int, origin_lps, spacing, uids) -> bytes:
    """One CT slice file; ``pixels_hu`` is (rows, columns) in HU."""
    ds = _identity(*uids)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.InstanceNumber = index + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    column_mm, row_mm, slice_mm = spacing
    ds.ImagePositionPatient = [float(v) for v in origin_lps]
    ds.ImageOrientationPatient = ORIENTATION
    ds.PixelSpacing = [row_mm, column_mm]  # DICOM order: between rows, between columns
    ds.SliceThickness = slice_mm
    ds.Rows, ds.Columns = pixels_hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1.0, "HU"
    stored = np.clip(np.round(pixels_hu - RESCALE_INTERCEPT), 0, 4095).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_series_zip(image, path: Path, *, shuffle_seed: int = 0) -> Path:
    """Write a core ``Volume`` (RAS axes, diagonal affine) as a zipped DICOM series.

    The core reads the zip back with the same array (HU rounded to integers) and affine. The
    members are written in a shuffled order (as real exports often are), so the reader must
    sort them by position.

    Args:
        image: a :class:`syntumor_core.volume.Volume` whose affine is diagonal with positive
            spacing (what the phantom makes).
        path: the ``.zip`` to write.
        shuffle_seed: seed of the member order.
    """
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = np.diag(affine)[:3]
    if not np.allclose(affine[:3, :3], np.diag(spacing)) or (spacing <= 0).any():
        raise ValueError("write_series_zip needs a diagonal affine with positive spacing")
    origin_lps = np.array([-affine[0, 3], -affine[1, 3], affine[2, 3]])
    uids = (generate_uid(), generate_uid(), generate_uid())
    array = np.asarray(image.array)
    order = np.random.default_rng(shuffle_seed).permutation(array.shape[2])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in order:
            origin = origin_lps + np.array([0.0, 0.0, float(index) * spacing[2]])
            data = _slice(array[:, :, index].T, int(index), origin, tuple(spacing), uids)
            archive.writestr(f"series/IM{index:04d}.dcm", data)
    return path
