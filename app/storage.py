"""Files under the data folder: uploads streamed to disk, validated, stored by content hash.

Layout (all relative to ``data_dir``)::

    tmp/                      uploads in flight (removed on any failure)
    volumes/ab/<sha256>.nii.gz   stored volumes, named by the SHA-256 of their bytes
    volumes/ab/<sha256>.zip      an uploaded DICOM series as received (kept for DICOM-SEG)
    results/<job id>/…           job outputs (manifests, DICOM-SEG, lesion tables)

A file is moved into place only after it validated; the database row is added after the file
is in place, and removed files are never referenced. User-supplied names are display text only,
never part of a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syntumor_core.errors import SynTumorError, VolumeError
from syntumor_core.volume import Volume, load_dicom_series, load_label_nifti, load_nifti, save_nifti

CHUNK_BYTES = 1024 * 1024
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
MIN_AXIS = 8
NIFTI_SUFFIXES = (".nii.gz", ".nii")


class UploadError(ValueError):
    """An upload was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoredFile:
    """A validated file in its final place."""

    sha256: str
    path: str  # relative to the data folder
    size_bytes: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    source_format: str  # nifti | dicom
    dicom_zip: str | None = None  # relative path of the original DICOM zip


def safe_display_name(name: str | None, default: str = "volume") -> str:
    """A harmless display name: the last path part, printable characters, at most 200."""
    text = unicodedata.normalize("NFKC", name or "")
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(ch for ch in text if ch.isprintable() and ch not in "<>\"'`")
    text = text.strip().lstrip(".").strip()
    return text[:200] or default


def upload_format(name: str) -> str:
    lower = name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(".zip"):
        return "dicom"
    raise UploadError(
        f"unsupported file type {name!r}: upload a NIfTI (.nii, .nii.gz) or a .zip of one DICOM "
        "series",
        415,
    )


class Storage:
    """The data folder's files."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve()
        self.tmp_dir = self.root / "tmp"
        self.volumes_dir = self.root / "volumes"
        self.results_dir = self.root / "results"
        for folder in (self.tmp_dir, self.volumes_dir, self.results_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def absolute(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses anything outside the data folder."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise UploadError(f"path {relative!r} is outside the data folder", 400)
        return path

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def result_dir(self, job_id: int) -> Path:
        folder = self.results_dir / str(int(job_id))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def new_temp_path(self, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=self.tmp_dir)
        os.close(handle)
        return Path(name)

    async def receive(self, chunks: AsyncIterator[bytes], suffix: str, max_bytes: int) -> Path:
        """Stream ``chunks`` into a temporary file, refusing more than ``max_bytes``."""
        target = self.new_temp_path(suffix)
        written = 0
        try:
            with target.open("wb") as out:
                async for chunk in chunks:
                    written += len(chunk)
                    if written > max_bytes:
                        raise UploadError(
                            f"upload larger than the limit of {max_bytes // (1024 * 1024)} MiB",
                            413,
                        )
                    out.write(chunk)
            if written == 0:
                raise UploadError("the upload is empty", 400)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def store_upload(self, temp_path: Path, name: str, *, label: bool = False) -> StoredFile:
        """Validate an uploaded temporary file and move it into place (the temp file is gone)."""
        try:
            kind = upload_format(name)
            if kind == "nifti":
                return self._store_nifti(temp_path, name, label)
            if label:
                raise UploadError("label maps must be NIfTI files", 415)
            return self._store_dicom(temp_path, name)
        finally:
            temp_path.unlink(missing_ok=True)

    def store_volume(self, volume: Volume, *, label: bool = False) -> StoredFile:
        """Write an in-memory volume (a job's output, a demo case) into the store."""
        temp_path = self.new_temp_path(".nii.gz")
        try:
            save_nifti(volume, temp_path, dtype=np.uint8 if label else np.float32)
            return self._place(temp_path, ".nii.gz", volume, "nifti")
        finally:
            temp_path.unlink(missing_ok=True)

    def load(self, relative: str, *, label: bool = False) -> Volume:
        path = self.absolute(relative)
        return load_label_nifti(path) if label else load_nifti(path)

    def remove_unreferenced(self, relative: str | None) -> None:
        if relative:
            self.absolute(relative).unlink(missing_ok=True)

    # --- internals ---------------------------------------------------------------------------

    def _store_nifti(self, temp_path: Path, name: str, label: bool) -> StoredFile:
        suffix = ".nii.gz" if name.lower().endswith(".gz") else ".nii"
        named = temp_path.with_name(temp_path.stem + "-in" + suffix)
        os.replace(temp_path, named)
        try:
            volume = _read_checked(named, name, label)
            return self._place(named, suffix, volume, "nifti")
        finally:
            named.unlink(missing_ok=True)

    def _store_dicom(self, temp_path: Path, name: str) -> StoredFile:
        zipped = temp_path.with_name(temp_path.stem + "-in.zip")
        os.replace(temp_path, zipped)
        converted = self.new_temp_path(".nii.gz")
        try:
            try:
                volume = load_dicom_series(zipped)
            except SynTumorError as error:
                raise UploadError(_rename(str(error), zipped, name), 422) from None
            _check_geometry(volume, name)
            zip_sha = _sha256(zipped)
            zip_rel = self._move_into_store(zipped, zip_sha, ".zip")
            save_nifti(volume, converted, dtype=np.float32)
            stored = self._place(converted, ".nii.gz", volume, "dicom")
            return StoredFile(**{**stored.__dict__, "sha256": zip_sha, "dicom_zip": zip_rel})
        finally:
            zipped.unlink(missing_ok=True)
            converted.unlink(missing_ok=True)

    def _place(self, path: Path, suffix: str, volume: Volume, source_format: str) -> StoredFile:
        sha = _sha256(path)
        size = path.stat().st_size
        relative = self._move_into_store(path, sha, suffix)
        spacing = tuple(round(float(s), 6) for s in volume.spacing)
        return StoredFile(sha, relative, size, tuple(volume.shape), spacing, source_format)

    def _move_into_store(self, path: Path, sha: str, suffix: str) -> str:
        folder = self.volumes_dir / sha[:2]
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{sha}{suffix}"
        if final.exists():  # same bytes already stored: nothing to write
            path.unlink(missing_ok=True)
        else:
            temp_final = folder / f".{sha}{suffix}.part"
            shutil.copyfile(path, temp_final)
            os.replace(temp_final, final)
        return self.relative(final)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _rename(message: str, path: Path, name: str) -> str:
    """Replace the temporary file's path in a core message with the uploaded file's name."""
    return message.replace(str(path), name).replace(path.name, name)


def _read_checked(path: Path, name: str, label: bool) -> Volume:
    try:
        volume = load_label_nifti(path) if label else load_nifti(path)
    except SynTumorError as error:
        raise UploadError(_rename(str(error), path, name), 422) from None
    except (OSError, EOFError, ValueError) as error:  # nibabel/gzip failures not typed by the core
        raise UploadError(f"{name}: not a readable NIfTI file ({error})", 422) from None
    _check_geometry(volume, name)
    return volume


def _check_geometry(volume: Volume, name: str) -> None:
    shape = tuple(volume.shape)
    if min(shape) < MIN_AXIS:
        raise UploadError(
            f"{name}: shape {shape} is too small for a CT volume (each axis needs at least "
            f"{MIN_AXIS} voxels)",
            422,
        )
    spacing = tuple(float(s) for s in volume.spacing)
    if not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing):
        raise UploadError(
            f"{name}: voxel spacing {tuple(round(s, 4) for s in spacing)} mm is not plausible for "
            f"CT (each must be {MIN_SPACING_MM}..{MAX_SPACING_MM} mm)",
            422,
        )


__all__ = ["Storage", "StoredFile", "UploadError", "VolumeError", "safe_display_name"]
