"""Storage and the bounded-memory NIfTI check, in this process (no server).

:func:`app.volumes.scan.scan_nifti` must accept what the core's loader accepts and refuse what
it refuses, with the uploaded name (never a server path) in the message.
"""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from app.volumes import scan as nifti_scan
from app.volumes.scan import NiftiScanError, scan_nifti
from app.volumes.storage import Storage, UploadError
from syntumor_core.errors import VolumeError
from syntumor_core.volume import load_label_nifti, load_nifti

SHAPE = (20, 18, 12)


def write(path, array, *, affine=None, slope=None, inter=None, compressed=False, dtype=None):
    image = nib.Nifti1Image(
        np.asarray(array), np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine
    )
    if dtype is not None:
        image.set_data_dtype(dtype)
    if slope is not None:
        image.header.set_slope_inter(slope, inter or 0.0)
    raw = image.to_bytes()
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    return path


def ct(seed=0, shape=SHAPE) -> np.ndarray:
    return (40 + 10 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("compressed", [False, True])
def test_a_good_image_gives_the_cores_shape_spacing_and_affine(tmp_path, compressed):
    path = write(tmp_path / "ct.nii", ct(), compressed=compressed)
    summary = scan_nifti(path, name="ct.nii")
    volume = load_nifti(path)
    assert summary.shape == volume.shape == SHAPE
    assert summary.spacing_mm == pytest.approx(volume.spacing) == (1.5, 1.5, 3.0)
    assert np.array_equal(summary.affine, volume.affine)
    assert summary.compressed is compressed


def test_a_4d_file_with_a_trailing_axis_of_one_is_a_3d_volume(tmp_path):
    path = write(tmp_path / "t.nii", ct()[..., None])
    assert scan_nifti(path, name="t.nii").shape == SHAPE == load_nifti(path).shape


def test_the_scan_reads_in_slabs_and_finds_a_nan_in_a_later_one(tmp_path, monkeypatch):
    monkeypatch.setattr(nifti_scan, "SLAB_BYTES", 1024)  # many slabs on a small file
    array = ct()
    array[15, 10, 11] = np.inf
    path = write(tmp_path / "inf.nii", array)
    with pytest.raises(
        NiftiScanError,
        match=r"inf\.nii: holds NaN or infinite values \(first at voxel \(15, 10, 11\)\)",
    ):
        scan_nifti(path, name="inf.nii")
    with pytest.raises(VolumeError, match="infinite"):
        load_nifti(path)


def test_scaled_values_are_checked_after_scaling(tmp_path):
    stored = np.zeros(SHAPE, dtype=np.int16)
    stored[1, 2, 3] = 7
    path = write(tmp_path / "s.nii", stored, slope=0.5, inter=0.0, dtype=np.int16)
    with pytest.raises(NiftiScanError, match="a label map must hold integers, got 3.5 at voxel"):
        scan_nifti(path, name="s.nii", label=True)
    with pytest.raises(VolumeError, match="must hold integers"):
        load_label_nifti(path)
    assert scan_nifti(path, name="s.nii").shape == SHAPE  # as an image it is fine


def test_label_values_must_fit_int16(tmp_path):
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[0, 0, 0] = 40_000
    path = write(tmp_path / "big.nii", labels)
    with pytest.raises(NiftiScanError, match="label values 0..40000 do not fit int16"):
        scan_nifti(path, name="big.nii", label=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a NIfTI file"),
        (b"\x1f\x8b\x08\x00garbage", "broken or truncated gzip data"),
        (b"\x5c\x01\x00\x00" + b"\0" * 100, "truncated NIfTI header"),
    ],
)
def test_junk_is_refused_with_the_given_name(tmp_path, content, message):
    path = tmp_path / "upload-123-in.nii"
    path.write_bytes(content)
    with pytest.raises(NiftiScanError, match=message) as raised:
        scan_nifti(path, name="mine.nii")
    assert str(raised.value).startswith("mine.nii: ") and str(tmp_path) not in str(raised.value)


def test_a_zero_voxel_size_is_refused(tmp_path):
    image = nib.Nifti1Image(ct(), np.diag([1.5, 1.5, 3.0, 1.0]))
    image.header["pixdim"][2] = 0.0
    (tmp_path / "z.nii").write_bytes(image.to_bytes())
    with pytest.raises(NiftiScanError, match=r"z\.nii: voxel size \(pixdim\) must be > 0 mm"):
        scan_nifti(tmp_path / "z.nii", name="z.nii")
    with pytest.raises(VolumeError, match="pixdim"):
        load_nifti(tmp_path / "z.nii")


def test_store_upload_moves_the_checked_file_and_leaves_no_temp(tmp_path):
    storage = Storage(tmp_path / "data")
    temp = storage.new_temp_path(".upload")
    write(temp, ct(), compressed=True)
    stored = storage.store_upload(temp, "../../ct.nii")  # named .nii, but gzip inside
    assert stored.path.endswith(".nii.gz") and stored.shape == SHAPE
    assert storage.absolute(stored.path).is_file() and not temp.exists()
    assert load_nifti(storage.absolute(stored.path)).shape == SHAPE
    again = storage.new_temp_path(".upload")
    again.write_bytes(b"not a nifti")
    with pytest.raises(UploadError) as raised:
        storage.store_upload(again, "x.nii")
    assert raised.value.status == 422 and not again.exists()
    assert list(storage.tmp_dir.iterdir()) == []
    with pytest.raises(UploadError, match="outside the data folder"):
        storage.absolute("../../etc/passwd")


def test_leftover_uploads_of_a_killed_process_are_swept(tmp_path):
    storage = Storage(tmp_path / "data")
    old, new = storage.new_temp_path(".upload"), storage.new_temp_path(".upload")
    os.utime(old, (0, 0))
    assert storage.sweep_tmp() == 1
    assert not old.exists() and new.exists()


def test_partial_uploads_are_cleaned_at_start_unless_a_live_process_writes_them(tmp_path):
    import subprocess
    import sys

    storage = Storage(tmp_path / "data")
    mine = storage.new_temp_path(".upload")  # this pid: an earlier life's, at start-up
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    crashed = storage.tmp_dir / f"upload-{dead}-abc.upload"
    legacy = storage.tmp_dir / "upload-x1y2.upload"
    live = storage.tmp_dir / f"upload-{os.getppid()}-def.upload"  # a running process's
    for path in (crashed, legacy, live):
        path.write_bytes(b"partial")
    assert mine.name.startswith(f"upload-{os.getpid()}-")
    assert storage.clean_tmp_at_start() == 3
    assert sorted(storage.tmp_dir.iterdir()) == [live]
