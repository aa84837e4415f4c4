"""NIfTI and DICOM input/output of syntumor_core.volume (and syntumor_core.dicom)."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from syntumor_core.errors import DicomError, MaskError, VolumeError
from syntumor_core.volume import (
    Volume,
    load_dicom_series,
    load_label_nifti,
    load_nifti,
    load_volume,
    read_zip_members,
    save_nifti,
    validate_image,
    validate_mask,
)

# Byte offsets of NIfTI-1 header fields, for writing hostile files by hand.
DIM_OFFSET = 40
PIXDIM_OFFSET = 76
SROW_OFFSET = 280


def rotation(angles_deg) -> np.ndarray:
    """A proper rotation matrix from three angles about x, y and z."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def float32_exact(affine: np.ndarray) -> np.ndarray:
    return np.asarray(affine, dtype=np.float32).astype(np.float64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20230617)


@pytest.fixture
def ct_volume(rng) -> Volume:
    array = rng.normal(40.0, 200.0, size=(6, 7, 5)).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] = rotation((10, -20, 30)) @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = (-120.5, 33.25, 400.0)
    return Volume(array, float32_exact(affine))


def patch_bytes(path: Path, offset: int, fmt: str, *values) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- NIfTI round trips


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_float32_affine_round_trips_bit_exactly(tmp_path, ct_volume, suffix):
    path = save_nifti(ct_volume, tmp_path / f"ct{suffix}")
    loaded = load_nifti(path)
    assert loaded.array.dtype == np.float32
    assert np.array_equal(loaded.array, ct_volume.array)
    assert np.array_equal(loaded.affine, ct_volume.affine)
    header = nib.load(path).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    assert np.allclose(header.get_qform(), ct_volume.affine, atol=1e-4)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".nii.gz")


def test_volume_loaded_from_foreign_nifti_round_trips_exactly(tmp_path):
    stored = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 50
    affine = np.eye(4)
    affine[:3, :3] = rotation((0, 0, 33.3)) @ np.diag([0.71, 0.71, 3.0])
    affine[:3, 3] = (10.1, -20.2, 30.3)
    image = nib.Nifti1Image(stored, None)
    image.set_qform(affine, code=1)  # qform only: the affine comes from a quaternion
    image.set_sform(None, code=0)
    image.header.set_slope_inter(0.5, -1024.0)
    nib.save(image, tmp_path / "foreign.nii.gz")

    first = load_nifti(tmp_path / "foreign.nii.gz")
    assert np.array_equal(first.array, stored.astype(np.float64) * 0.5 - 1024.0)
    assert np.allclose(first.affine, affine, atol=1e-4)
    second = load_nifti(save_nifti(first, tmp_path / "again.nii"))
    assert np.array_equal(second.array, first.array)
    assert np.array_equal(second.affine, first.affine)


def test_unrepresentable_affine_is_rounded_to_float32(tmp_path, ct_volume):
    affine = ct_volume.affine.copy()
    affine[0, 3] = 0.1  # not a float32 value
    loaded = load_nifti(save_nifti(Volume(ct_volume.array, affine), tmp_path / "r.nii"))
    assert loaded.affine[0, 3] != 0.1
    assert loaded.affine[0, 3] == np.float32(0.1)


@pytest.mark.parametrize(
    "matrix",
    [
        [[0, 0, -2.0], [1.5, 0, 0], [0, -1.0, 0]],  # permuted axes with flips
        [[-0.5, 0, 0], [0, -0.5, 0], [0, 0, 2.0]],  # LPS-like
        (rotation((25, 0, 0)) @ np.diag([1.0, 1.0, 3.0])).tolist(),  # oblique
    ],
)
def test_non_ras_affines_are_preserved_not_reoriented(tmp_path, ct_volume, matrix):
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = (5.0, -7.5, 12.0)
    volume = Volume(ct_volume.array, float32_exact(affine))
    loaded = load_nifti(save_nifti(volume, tmp_path / "o.nii.gz"))
    assert np.array_equal(loaded.affine, volume.affine)
    assert np.array_equal(loaded.array, volume.array)
    assert loaded.axcodes == volume.axcodes


def test_save_with_integer_dtype_rounds_and_checks_range(tmp_path, ct_volume):
    path = save_nifti(ct_volume, tmp_path / "i.nii", dtype=np.int16)
    assert nib.load(path).get_data_dtype() == np.int16
    assert np.array_equal(load_nifti(path).array, np.round(ct_volume.array))
    with pytest.raises(VolumeError, match="do not fit uint8"):
        save_nifti(ct_volume, tmp_path / "u.nii", dtype=np.uint8)
    with pytest.raises(VolumeError, match="must end in .nii or .nii.gz"):
        save_nifti(ct_volume, tmp_path / "ct.nrrd")


@pytest.mark.parametrize(("high", "dtype"), [(2, np.uint8), (1000, np.int16), (70000, np.int32)])
def test_int64_labels_are_narrowed_when_saved(tmp_path, ct_volume, high, dtype):
    labels = np.zeros(ct_volume.shape, dtype=np.int64)
    labels[1, 2, 3] = high
    path = save_nifti(Volume(labels, ct_volume.affine), tmp_path / "l.nii")
    assert nib.load(path).get_data_dtype() == dtype
    assert np.array_equal(np.asarray(nib.load(path).dataobj), labels)


def test_unsupported_save_dtype(tmp_path, ct_volume):
    with pytest.raises(VolumeError, match="cannot store float16"):
        save_nifti(ct_volume, tmp_path / "h.nii", dtype=np.float16)


def test_boolean_mask_is_saved_as_uint8(tmp_path, ct_volume):
    mask = ct_volume.array > 40
    path = save_nifti(Volume(mask, ct_volume.affine), tmp_path / "m.nii.gz")
    labels = load_label_nifti(path)
    assert labels.array.dtype == np.uint8
    assert np.array_equal(labels.array, mask.astype(np.uint8))


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([0, 1, 2], np.uint8), ([0, 300, 7], np.int16), ([-5, 0, 3], np.int16)],
)
def test_label_maps_get_the_smallest_integer_type(tmp_path, values, dtype):
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[0, 0, :3] = values
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "l.nii")
    labels = load_label_nifti(tmp_path / "l.nii")
    assert labels.array.dtype == dtype
    assert labels.array[0, 0, :3].tolist() == values


def test_non_integer_labels_are_refused(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 2, 3] = 0.5
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "l.nii")
    with pytest.raises(VolumeError, match=r"must hold integers, got 0.5 at voxel \(1, 2, 3\)"):
        load_label_nifti(tmp_path / "l.nii")


def test_4d_with_last_axis_of_one_is_squeezed(tmp_path, rng):
    array = rng.normal(size=(3, 4, 5, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "s.nii")
    loaded = load_nifti(tmp_path / "s.nii")
    assert loaded.shape == (3, 4, 5)
    assert np.array_equal(loaded.array, array[..., 0])


def test_nifti2_is_read(tmp_path, ct_volume):
    nib.save(nib.Nifti2Image(ct_volume.array, ct_volume.affine), tmp_path / "two.nii")
    loaded = load_nifti(tmp_path / "two.nii")
    assert np.array_equal(loaded.array, ct_volume.array)
    assert np.array_equal(loaded.affine, ct_volume.affine)


# --------------------------------------------------------------------------- NIfTI errors


def small_nifti(path: Path, array=None) -> Path:
    array = np.zeros((3, 4, 5), dtype=np.float32) if array is None else array
    nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(VolumeError, match="nope.nii: file not found"):
        load_nifti(tmp_path / "nope.nii")
    with pytest.raises(VolumeError, match="file not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_folder_is_not_a_nifti(tmp_path):
    with pytest.raises(VolumeError, match="is a folder"):
        load_nifti(tmp_path)


@pytest.mark.parametrize("content", [b"hello, this is a readme\n" * 20, b"", b"x" * 348])
def test_not_a_nifti(tmp_path, content):
    (tmp_path / "readme.nii").write_bytes(content)
    with pytest.raises(VolumeError, match="readme.nii: not a NIfTI file"):
        load_nifti(tmp_path / "readme.nii")


def test_analyze_header_without_magic_is_not_a_nifti(tmp_path):
    path = small_nifti(tmp_path / "a.nii")
    patch_bytes(path, 344, "4s", b"\0\0\0\0")
    with pytest.raises(VolumeError, match="not a NIfTI file"):
        load_nifti(path)


def test_broken_gzip(tmp_path):
    (tmp_path / "b.nii.gz").write_bytes(b"\x1f\x8b" + b"not really deflate data" * 10)
    with pytest.raises(VolumeError, match="b.nii.gz: broken or truncated gzip"):
        load_nifti(tmp_path / "b.nii.gz")


def test_truncated_gzip(tmp_path):
    raw = small_nifti(tmp_path / "t.nii").read_bytes()
    (tmp_path / "t.nii.gz").write_bytes(gzip.compress(raw)[:-30])
    with pytest.raises(VolumeError, match="broken or truncated gzip"):
        load_nifti(tmp_path / "t.nii.gz")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_voxel_data(tmp_path, suffix):
    raw = small_nifti(tmp_path / "full.nii").read_bytes()[:-40]
    path = tmp_path / f"t{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    with pytest.raises(VolumeError, match=r"truncated voxel data.*\(3, 4, 5\)"):
        load_nifti(path)


def test_2d_image_is_refused(tmp_path):
    small_nifti(tmp_path / "flat.nii", np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(VolumeError, match=r"must be 3-D, got 2-D shape \(4, 5\)"):
        load_nifti(tmp_path / "flat.nii")


def test_4d_image_is_refused(tmp_path):
    small_nifti(tmp_path / "t.nii", np.zeros((3, 4, 5, 2), dtype=np.float32))
    with pytest.raises(VolumeError, match=r"must be 3-D, got 4-D shape \(3, 4, 5, 2\)"):
        load_nifti(tmp_path / "t.nii")


@pytest.mark.parametrize(("bad", "words"), [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN")])
def test_non_finite_voxels_are_refused(tmp_path, bad, words):
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[2, 1, 0] = bad
    small_nifti(tmp_path / "n.nii", array)
    with pytest.raises(VolumeError, match=rf"{words}.*\(2, 1, 0\)"):
        load_nifti(tmp_path / "n.nii")


@pytest.mark.parametrize("voxel_size", [0.0, -1.5])
def test_zero_or_negative_pixdim_is_refused(tmp_path, voxel_size):
    path = small_nifti(tmp_path / "p.nii")
    patch_bytes(path, PIXDIM_OFFSET + 2 * 4, "<f", voxel_size)
    with pytest.raises(VolumeError, match=r"pixdim\) must be > 0 mm"):
        load_nifti(path)


def test_zero_spacing_in_the_sform_is_refused(tmp_path):
    path = small_nifti(tmp_path / "z.nii")
    for row in range(3):  # zero the second column of srow_x, srow_y, srow_z
        patch_bytes(path, SROW_OFFSET + row * 16 + 4, "<f", 0.0)
    with pytest.raises(VolumeError, match="spacing must be > 0 mm"):
        load_nifti(path)


def test_absurd_axis_length_is_refused(tmp_path):
    small_nifti(tmp_path / "long.nii", np.zeros((2049, 2, 2), dtype=np.uint8))
    with pytest.raises(VolumeError, match="2049 voxels along axis 0"):
        load_nifti(tmp_path / "long.nii")


def test_absurd_shape_in_header_is_refused_before_reading(tmp_path):
    path = small_nifti(tmp_path / "huge.nii")
    patch_bytes(path, DIM_OFFSET + 2 * 2, "<h", 30000)  # dim[2]
    with pytest.raises(VolumeError, match="30000 voxels along axis 1"):
        load_nifti(path)


# --------------------------------------------------------------------------- validation


def test_validate_image_accepts_a_ct_array(rng):
    validate_image(rng.normal(size=(4, 5, 6)).astype(np.float32))
    validate_image(np.zeros((2, 2, 2), dtype=np.int16))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 5), dtype=np.float32), r"ct must be 3-D, got 2-D shape \(4, 5\)"),
        (np.zeros((4, 1, 5), dtype=np.float32), "1 voxels along axis 1"),
        (np.zeros((3, 3, 3), dtype=bool), "must hold real numbers, got dtype bool"),
        (np.zeros((3, 3, 3), dtype=np.complex64), "dtype complex64"),
        (np.zeros((3, 3, 3), dtype=object), "dtype object"),
        ([[[1.0]]], "must be a numpy array, got list"),
    ],
)
def test_validate_image_refuses(array, message):
    with pytest.raises(VolumeError, match=message):
        validate_image(array, name="ct")


def test_validate_mask_returns_boolean_array():
    mask = np.zeros((3, 4, 5), dtype=np.uint8)
    mask[1, 1, 1] = 1
    result = validate_mask(mask, (3, 4, 5))
    assert result.dtype == np.bool_ and result.sum() == 1 and result[1, 1, 1]


@pytest.mark.parametrize(
    ("mask", "shape", "message"),
    [
        (np.ones((3, 4), dtype=bool), (3, 4, 5), "liver must be 3-D"),
        (np.ones((3, 4, 6), dtype=bool), (3, 4, 5), r"shape \(3, 4, 6\) does not match"),
        (np.zeros((3, 4, 5), dtype=bool), (3, 4, 5), "liver is empty"),
        (np.full((3, 4, 5), 2, dtype=np.uint8), (3, 4, 5), r"binary.*\[2\].*labels == 1"),
    ],
)
def test_validate_mask_refuses(mask, shape, message):
    with pytest.raises(MaskError, match=message):
        validate_mask(mask, shape, name="liver")


# --------------------------------------------------------------------------- DICOM series


STORED_SLOPE, STORED_INTERCEPT = 2.0, -1024.0


def dicom_slice(
    stored_slice: np.ndarray, position, orientation, *, series_uid, pixel_spacing=(0.7, 0.6)
) -> Dataset:
    """A single-frame CT slice; ``stored_slice`` is (rows, columns) of int16 stored values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", series_uid, 1
    ds.Rows, ds.Columns = stored_slice.shape
    ds.PixelSpacing = list(pixel_spacing)
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.RescaleSlope, ds.RescaleIntercept = STORED_SLOPE, STORED_INTERCEPT
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = stored_slice.astype("<i2").tobytes()
    return ds


class Series:
    """A known series: stored values as (column, row, slice), and its geometry in LPS."""

    def __init__(self, rng, *, n_slices=5, rows=6, columns=4, step=2.5, angles=(12, -8, 20)):
        self.stored = rng.integers(-200, 900, size=(columns, rows, n_slices), dtype=np.int16)
        self.frame = rotation(angles)  # columns: along a row, along a column, normal
        self.origin = np.array([-100.0, 50.0, 300.0])
        self.positions = [self.origin + k * step * self.frame[:, 2] for k in range(n_slices)]
        self.uid = generate_uid()

    @property
    def orientation(self):
        return list(self.frame[:, 0]) + list(self.frame[:, 1])

    @property
    def hu(self) -> np.ndarray:
        return self.stored.astype(np.float32) * STORED_SLOPE + STORED_INTERCEPT

    def datasets(self, positions=None):
        positions = self.positions if positions is None else positions
        for k, position in enumerate(positions):
            yield dicom_slice(
                self.stored[:, :, k].T, position, self.orientation, series_uid=self.uid
            )

    def write(self, folder: Path, rng, positions=None, prefix="s") -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        datasets = list(self.datasets(positions))
        names = rng.permutation(len(datasets))  # file names in shuffled order
        paths = []
        for name, ds in zip(names, datasets, strict=True):
            ds.InstanceNumber = int(name) + 1  # misleading on purpose
            paths.append(folder / f"{prefix}{name:03d}.dcm")
            ds.save_as(paths[-1], enforce_file_format=True)
        return paths


def expected_ras_world(series: Series, column, row, k, spacing=(0.7, 0.6)):
    """World position computed independently from the per-slice DICOM attributes."""
    lps = (
        series.positions[k]
        + column * spacing[1] * series.frame[:, 0]
        + row * spacing[0] * series.frame[:, 1]
    )
    return np.array([-lps[0], -lps[1], lps[2]])


def assert_matches(volume: Volume, series: Series) -> None:
    assert volume.array.dtype == np.float32
    assert np.array_equal(volume.array, series.hu)
    corners = [(0, 0, 0), (3, 0, 0), (0, 5, 0), (0, 0, 4), (3, 5, 4), (1, 2, 3)]
    for column, row, k in corners:
        world = volume.affine @ np.array([column, row, k, 1.0])
        assert np.allclose(world[:3], expected_ras_world(series, column, row, k), atol=1e-6)


def test_dicom_series_array_and_ras_affine_match(tmp_path, rng):
    series = Series(rng)
    series.write(tmp_path / "ct", rng)
    (tmp_path / "ct" / "README.txt").write_text("not DICOM")
    (tmp_path / "ct" / "DICOMDIR").write_bytes(b"\0" * 200)
    volume = load_dicom_series(tmp_path / "ct")
    assert_matches(volume, series)
    assert np.allclose(volume.spacing, (0.6, 0.7, 2.5))


def test_standard_axial_series_is_lps_flipped_to_ras(tmp_path, rng):
    series = Series(rng, angles=(0, 0, 0))
    series.write(tmp_path / "ct", rng)
    volume = load_volume(tmp_path / "ct")
    assert volume.axcodes == ("L", "P", "S")
    assert np.allclose(volume.affine[:3, 3], [100.0, -50.0, 300.0])


def test_slices_listed_head_first_are_sorted_along_the_normal(tmp_path, rng):
    series = Series(rng)
    positions = series.positions[::-1]
    stored = series.stored[:, :, ::-1]
    folder = tmp_path / "ct"
    folder.mkdir()
    for k, position in enumerate(positions):
        ds = dicom_slice(stored[:, :, k].T, position, series.orientation, series_uid=series.uid)
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    assert_matches(load_dicom_series(folder), series)


def test_zip_of_a_series(tmp_path, rng):
    series = Series(rng)
    paths = series.write(tmp_path / "ct", rng)
    with zipfile.ZipFile(tmp_path / "ct.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, f"study/series/{path.name}")
        archive.writestr("study/readme.txt", "hello")
    assert_matches(load_volume(tmp_path / "ct.zip"), series)


def test_zip_members_are_read_one_at_a_time(tmp_path, rng):
    """A zipped series never sits in memory as a whole: files carrying 300 KB of other data
    each (24 of them, 7 MB unpacked) load with a peak far below the archive's contents."""
    series = Series(rng, n_slices=24, rows=32, columns=32)
    with zipfile.ZipFile(tmp_path / "ct.zip", "w", zipfile.ZIP_STORED) as archive:
        for k, ds in enumerate(series.datasets()):
            ds.private_block(0x0009, "SYNTUMOR TEST", create=True).add_new(
                0x10, "OB", bytes(300_000)
            )
            stream = io.BytesIO()
            ds.save_as(stream, enforce_file_format=True)
            archive.writestr(f"s{k:03d}.dcm", stream.getvalue())
        unpacked = sum(info.file_size for info in archive.infolist())
    tracemalloc.start()
    try:
        volume = load_volume(tmp_path / "ct.zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(volume.array, series.hu)
    assert unpacked > 7_000_000 and peak < unpacked / 4, (peak, unpacked)


def test_damaged_zip_member_names_the_file(tmp_path, rng):
    """A member whose bytes no longer match its CRC is reported, not read as garbage."""
    series = Series(rng)
    paths = series.write(tmp_path / "ct", rng)
    zipped = tmp_path / "ct.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as archive:
        for path in paths:
            archive.write(path, path.name)
    data = bytearray(zipped.read_bytes())
    last = paths[-1].read_bytes()
    where = bytes(data).index(last) + len(last) - 3  # inside the pixel data of that member
    data[where] ^= 0xFF
    zipped.write_bytes(bytes(data))
    with pytest.raises(DicomError, match=rf"{paths[-1].name}.*Bad CRC-32"):
        load_volume(zipped)


def test_two_series_in_one_folder_gives_the_larger(tmp_path, rng, caplog):
    small, large = Series(rng, n_slices=3), Series(rng, n_slices=6, angles=(0, 5, 0))
    small.write(tmp_path / "ct", rng, prefix="a")
    large.write(tmp_path / "ct", rng, prefix="b")
    with caplog.at_level("INFO", logger="syntumor_core.dicom"):
        volume = load_dicom_series(tmp_path / "ct")
    assert volume.shape == (4, 6, 6)
    assert_matches(volume, large)
    assert f"using {large.uid}" in caplog.text


def test_ct_small_single_slice_is_refused(tmp_path):
    ct_small = Path(get_testdata_file("CT_small.dcm"))
    with pytest.raises(DicomError, match="a 3-D series needs ≥2 slices, found 1"):
        load_volume(ct_small)
    shutil.copy(ct_small, tmp_path / "CT_small.dcm")
    with pytest.raises(DicomError, match="needs ≥2 slices"):
        load_dicom_series(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DicomError, match="no DICOM image slices found"):
        load_volume(tmp_path)


def test_missing_slice_is_reported_with_its_place(tmp_path, rng):
    series = Series(rng, n_slices=6)
    paths = series.write(tmp_path / "ct", rng)
    paths[3].unlink()  # the slice at 3 × 2.5 mm
    with pytest.raises(DicomError, match=r"missing slice.*gap of 5.00 mm.*after slice 3 of 5"):
        load_dicom_series(tmp_path / "ct")


def test_uneven_spacing_is_refused(tmp_path, rng):
    series = Series(rng, n_slices=5, angles=(0, 0, 0))
    positions = [series.origin + (0, 0, z) for z in (0.0, 2.5, 5.0, 8.0, 10.5)]
    series.write(tmp_path / "ct", rng, positions)
    with pytest.raises(DicomError, match=r"uneven slice spacing.*2.500 to 3.000 mm"):
        load_dicom_series(tmp_path / "ct")


def test_gantry_tilt_is_refused_with_its_angle(tmp_path, rng):
    series = Series(rng, angles=(0, 0, 0))
    tilt = np.radians(15.0)
    # Slice planes tilted about x by 15°, stacked along the table (z): a tilted gantry.
    series.frame = rotation((15.0, 0, 0))
    step = 2.5
    positions = [series.origin + (0, 0, k * step / np.cos(tilt)) for k in range(5)]
    series.write(tmp_path / "ct", rng, positions)
    with pytest.raises(DicomError, match=r"gantry tilt.*15.0°"):
        load_dicom_series(tmp_path / "ct")


def test_inconsistent_rows_and_columns(tmp_path, rng):
    series = Series(rng)
    series.write(tmp_path / "ct", rng)
    odd = dicom_slice(
        np.zeros((8, 8), np.int16), series.positions[0] + 10, series.orientation,
        series_uid=series.uid,
    )  # fmt: skip
    odd.save_as(tmp_path / "ct" / "odd.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match=r"inconsistent rows/columns.*6×4 in 5.*8×8 in 1"):
        load_dicom_series(tmp_path / "ct")


def test_undecodable_compressed_pixel_data_names_the_transfer_syntax(tmp_path, rng):
    series = Series(rng, n_slices=3)
    folder = tmp_path / "ct"
    folder.mkdir()
    for k, ds in enumerate(series.datasets()):
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f not a codestream " * 4])
        ds["PixelData"].VR = "OB"
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    with pytest.raises(
        DicomError, match=r"cannot decode.*JPEG 2000.*1\.2\.840\.10008\.1\.2\.4\.90"
    ):
        load_dicom_series(folder)


# --------------------------------------------------------------------------- hostile zips


def test_zip_bomb_is_refused_by_compression_ratio(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("slice.dcm", bytes(8 * 1024**2))  # zeros: ratio ~1000:1
    with pytest.raises(DicomError, match=r"compression ratio of \d+:1, above max_ratio=100"):
        load_volume(tmp_path / "bomb.zip")


def test_zip_limits_on_size_and_member_count(tmp_path):
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for index in range(5):
            archive.writestr(f"{index}.dcm", bytes(1000))
    limits = {"max_total_bytes": 10_000, "max_members": 10, "max_ratio": 100.0}
    assert [len(data) for _, data in read_zip_members(tmp_path / "many.zip", **limits)] == [
        1000
    ] * 5
    with pytest.raises(DicomError, match="holds 5 files, more than max_members=4"):
        read_zip_members(tmp_path / "many.zip", **{**limits, "max_members": 4})
    with pytest.raises(DicomError, match="unpacks to 5000 bytes, more than max_total_bytes=4999"):
        read_zip_members(tmp_path / "many.zip", **{**limits, "max_total_bytes": 4999})


def test_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 but not really")
    with pytest.raises(DicomError, match="not a readable zip archive"):
        load_volume(tmp_path / "fake.zip")


def test_hostile_member_names_are_never_used_as_paths(tmp_path, rng):
    series = Series(rng, n_slices=3)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with zipfile.ZipFile(workdir / "evil.zip", "w") as archive:
        for k, ds in enumerate(series.datasets()):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            name = ["../escaped.dcm", "/tmp/absolute.dcm", "../../x/../up.dcm"][k]
            archive.writestr(name, buffer.getvalue())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    volume = load_volume(workdir / "evil.zip")
    assert np.array_equal(volume.array, series.hu)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "escaped.dcm").exists()


def test_load_volume_recognises_files_by_content(tmp_path, rng, ct_volume):
    save_nifti(ct_volume, tmp_path / "ct.nii.gz")
    (tmp_path / "ct.nii.gz").rename(tmp_path / "upload.bin")
    assert np.array_equal(load_volume(tmp_path / "upload.bin").array, ct_volume.array)
    (tmp_path / "notes.bin").write_text("plain text")
    with pytest.raises(VolumeError, match="unrecognised file type"):
        load_volume(tmp_path / "notes.bin")
