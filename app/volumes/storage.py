"""Files under the data folder: uploads streamed to disk, validated, stored by content hash.

Layout (all relative to ``data_dir``)::

    tmp/                      uploads in flight (removed on any failure)
    volumes/ab/<sha256>.nii.gz   stored volumes, named by the SHA-256 of their bytes
    volumes/ab/<sha256>.zip      an uploaded DICOM series as received (kept for DICOM-SEG)
    results/<job id>/…           job outputs (manifests, DICOM-SEG, lesion tables)

A file is moved into place only after it validated (NIfTI in bounded memory by
:mod:`app.volumes.scan`, so a 1 GB upload never sits in RAM); the database row is added after the
file is in place, and removed files are never referenced. User-supplied names are display text
only, never part of a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.volumes.scan import NiftiScanError, scan_nifti
from syntumor_core.errors import SynTumorError, VolumeError
from syntumor_core.volume import Volume, load_dicom_series, load_label_nifti, load_nifti, save_nifti

CHUNK_BYTES = 1024 * 1024
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
MIN_AXIS = 8
NIFTI_SUFFIXES = (".nii.gz", ".nii")
STALE_TMP_S = 24 * 3600.0
TMP_PREFIX = "upload-"
MAX_DICOM_BYTES = 2 * 1024**3  # the most a DICOM zip may unpack to (it is read in memory)


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
        f"unsupported file type {safe_display_name(name, '')!r}: upload a NIfTI (.nii, .nii.gz) "
        "or a .zip of one DICOM series",
        415,
    )


class Storage:
    """The data folder's files."""

    def __init__(self, data_dir: Path, *, max_dicom_bytes: int = MAX_DICOM_BYTES) -> None:
        self.root = Path(data_dir).resolve()
        self.max_dicom_bytes = max_dicom_bytes
        self.tmp_dir = self.root / "tmp"
        self.volumes_dir = self.root / "volumes"
        self.results_dir = self.root / "results"
        for folder in (self.tmp_dir, self.volumes_dir, self.results_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.sweep_tmp()

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
        """A new empty file under ``tmp/``, named after this process (see
        :meth:`clean_tmp_at_start`)."""
        handle, name = tempfile.mkstemp(
            prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=suffix, dir=self.tmp_dir
        )
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

    def store_upload(
        self,
        temp_path: Path,
        name: str,
        *,
        label: bool = False,
        expected_shape: tuple[int, ...] | None = None,
    ) -> StoredFile:
        """Validate an uploaded temporary file and move it into place (the temp file is gone).

        Args:
            temp_path: the received file under ``tmp/``; removed whatever happens.
            name: the uploaded file name (tells the format; used in messages).
            label: the file is a label map (NIfTI only).
            expected_shape: refuse the file (422) unless its shape is this one (a label map
                must lie on its image's grid).

        Raises:
            UploadError: with the HTTP status and a message naming the problem.
        """
        try:
            kind = upload_format(name)
            shown = safe_display_name(name)
            if kind == "nifti":
                return self._store_nifti(temp_path, shown, label, expected_shape)
            if label:
                raise UploadError("label maps must be NIfTI files (.nii or .nii.gz)", 415)
            return self._store_dicom(temp_path, shown)
        finally:
            temp_path.unlink(missing_ok=True)

    def store_volume(self, volume: Volume, *, label: bool = False) -> StoredFile:
        """Write an in-memory volume (a job's output, a demo case) into the store."""
        temp_path = self.new_temp_path(".nii.gz")
        try:
            save_nifti(volume, temp_path, dtype=np.uint8 if label else np.float32)
            return self._place(temp_path, ".nii.gz", volume.shape, volume.spacing, "nifti")
        finally:
            temp_path.unlink(missing_ok=True)

    def load(self, relative: str, *, label: bool = False) -> Volume:
        path = self.absolute(relative)
        return load_label_nifti(path) if label else load_nifti(path)

    def remove_unreferenced(self, relative: str | None) -> None:
        if relative:
            self.absolute(relative).unlink(missing_ok=True)

    # --- internals ---------------------------------------------------------------------------

    def _store_nifti(
        self, temp_path: Path, name: str, label: bool, expected_shape: tuple[int, ...] | None
    ) -> StoredFile:
        """Check the file in bounded memory (header, then voxels in slabs) and store it as is."""
        try:
            summary = scan_nifti(temp_path, name=name, label=label)
        except NiftiScanError as error:
            raise UploadError(str(error), 422) from None
        _check_geometry(summary.shape, summary.spacing_mm, name)
        if expected_shape is not None and tuple(summary.shape) != tuple(expected_shape):
            raise UploadError(
                f"{name}: label map shape {summary.shape} differs from its image's "
                f"{tuple(expected_shape)}; a label map must lie on the image's grid",
                422,
            )
        suffix = ".nii.gz" if summary.compressed else ".nii"
        return self._place(temp_path, suffix, summary.shape, summary.spacing_mm, "nifti")

    def _store_dicom(self, temp_path: Path, name: str) -> StoredFile:
        """Assemble the zip's largest series; store it as NIfTI and keep the zip (DICOM-SEG)."""
        zipped = temp_path.with_name(temp_path.stem + "-in.zip")
        os.replace(temp_path, zipped)
        converted = self.new_temp_path(".nii.gz")
        try:
            try:
                volume = load_dicom_series(zipped, max_total_bytes=self.max_dicom_bytes)
            except SynTumorError as error:
                raise UploadError(_rename(str(error), zipped, name), 422) from None
            _check_geometry(volume.shape, volume.spacing, name)
            save_nifti(volume, converted, dtype=np.float32)
            zip_sha = _sha256(zipped)
            stored = self._place(converted, ".nii.gz", volume.shape, volume.spacing, "dicom")
            zip_rel = self._move_into_store(zipped, zip_sha, ".zip")
            return StoredFile(**{**stored.__dict__, "sha256": zip_sha, "dicom_zip": zip_rel})
        finally:
            zipped.unlink(missing_ok=True)
            converted.unlink(missing_ok=True)

    def _place(self, path: Path, suffix: str, shape, spacing, source_format: str) -> StoredFile:
        sha = _sha256(path)
        size = path.stat().st_size
        relative = self._move_into_store(path, sha, suffix)
        spacing = tuple(round(float(s), 6) for s in spacing)
        shape = tuple(int(n) for n in shape)
        return StoredFile(sha, relative, size, shape, spacing, source_format)

    def _move_into_store(self, path: Path, sha: str, suffix: str) -> str:
        """Move a checked file to ``volumes/<sha[:2]>/<sha><suffix>`` (a rename, no copy)."""
        folder = self.volumes_dir / sha[:2]
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{sha}{suffix}"
        if final.exists():  # same bytes already stored: nothing to write
            path.unlink(missing_ok=True)
        else:
            try:
                os.replace(path, final)  # tmp/ and volumes/ share the data folder's file system
            except OSError:
                temp_final = folder / f".{sha}{suffix}.part"
                shutil.copyfile(path, temp_final)
                os.replace(temp_final, final)
                path.unlink(missing_ok=True)
        return self.relative(final)

    def sweep_tmp(self, older_than_s: float = STALE_TMP_S) -> int:
        """Remove uploads left in ``tmp/`` by a killed process; returns how many went."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.tmp_dir.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def clean_tmp_at_start(self) -> int:
        """Remove what earlier server processes left in ``tmp/`` (a crash mid-upload); returns
        how many files went.

        Called once when the server starts. A file named after a process that is still running
        (another server over the same data folder) is kept; one named after this process's id
        is an earlier life's (a restarted container reuses its pid), as is any other file.
        """
        removed = 0
        for path in self.tmp_dir.iterdir():
            writer = _writer_pid(path.name)
            if writer is not None and writer != os.getpid() and _process_alive(writer):
                continue
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


def _writer_pid(file_name: str) -> int | None:
    """The process id in a temporary file's name (``upload-<pid>-…``), if there is one."""
    match = re.match(rf"{TMP_PREFIX}(\d+)-", file_name)
    return int(match.group(1)) if match else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _rename(message: str, path: Path, name: str) -> str:
    """Replace the temporary file's path in a core message with the uploaded file's name."""
    return message.replace(str(path), name).replace(path.name, name)


def _check_geometry(shape, spacing_mm, name: str) -> None:
    """Refuse volumes too small to be CT, or with implausible voxel sizes (mm)."""
    shape = tuple(int(n) for n in shape)
    if min(shape) < MIN_AXIS:
        raise UploadError(
            f"{name}: shape {shape} is too small for a CT volume (each axis needs at least "
            f"{MIN_AXIS} voxels)",
            422,
        )
    spacing = tuple(float(s) for s in spacing_mm)
    if not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing):
        raise UploadError(
            f"{name}: voxel spacing {tuple(round(s, 4) for s in spacing)} mm is not plausible for "
            f"CT (each must be {MIN_SPACING_MM}..{MAX_SPACING_MM} mm)",
            422,
        )


__all__ = ["Storage", "StoredFile", "UploadError", "VolumeError", "safe_display_name"]
