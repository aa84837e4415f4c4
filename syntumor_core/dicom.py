"""Assembling a DICOM CT series (a folder, a ``.zip`` or one file) into an array and affine.

The result is plain data (float32 HU and a RAS+ affine); :func:`syntumor_core.volume.
load_dicom_series` wraps it into a :class:`~syntumor_core.volume.Volume`. Zip archives are never
extracted to disk, so member names (``../x``, absolute paths) never reach the file system; the
archive is checked against size, count and compression-ratio limits before anything is
unpacked, and its members are then decompressed one at a time as they are read (headers first,
pixels only for the chosen series), so memory holds one file at a time, not the archive.
"""

from __future__ import annotations

import contextlib
import io
import logging
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from syntumor_core.errors import DicomError

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
DEFAULT_MAX_ZIP_MEMBERS = 20_000
DEFAULT_MAX_RATIO = 100.0
RATIO_CHECK_MIN_BYTES = 1024**2
_READ_CHUNK_BYTES = 1024**2
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# The only attributes read while sorting files into series: headers of every file are kept
# until the series is chosen, so large private or overlay data must not come with them.
_HEADER_TAGS = (
    "SeriesInstanceUID",
    "SeriesDescription",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "NumberOfFrames",
)


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """One assembled series.

    Args:
        array: float32 HU (RescaleSlope/Intercept applied), axes (column, row, slice), slices
            ordered by increasing position along the slice normal.
        affine: 4×4 voxel-to-world matrix in RAS+ mm (DICOM's LPS with x and y negated).
        series_uid: the SeriesInstanceUID ("" when the files carry none).
        description: the SeriesDescription, or "".
    """

    array: np.ndarray
    affine: np.ndarray
    series_uid: str
    description: str


@dataclass(frozen=True, eq=False)
class _ZipMember:
    """A file inside an open archive, decompressed each time it is opened."""

    archive: zipfile.ZipFile
    info: zipfile.ZipInfo


Source = Path | bytes | _ZipMember


@dataclass(frozen=True, eq=False)
class _SliceFile:
    name: str
    source: Source
    header: pydicom.Dataset


def read_zip_members(
    path: str | Path, *, max_total_bytes: int, max_members: int, max_ratio: float
) -> list[tuple[str, bytes]]:
    """Read every file of a zip archive into memory, refusing archives that look like bombs.

    Nothing is written to disk, so hostile member names are harmless; they are returned only
    for messages.

    Args:
        path: the ``.zip`` file.
        max_total_bytes: the most bytes all members together may unpack to.
        max_members: the most files (folders not counted) the archive may hold.
        max_ratio: the highest uncompressed/compressed size ratio allowed for a member larger
            than ``RATIO_CHECK_MIN_BYTES`` (1 MiB); zip bombs reach thousands.

    Returns:
        ``(member name, content)`` pairs in archive order.

    Raises:
        DicomError: not a zip, encrypted or corrupt member, or a limit exceeded (the message
            names the limit).
    """
    path = Path(path)
    with _checked_archive(path, max_total_bytes, max_members, max_ratio) as (archive, members):
        contents: list[tuple[str, bytes]] = []
        budget = max_total_bytes
        for info in members:
            data = _read_member(archive, info, budget, path, max_total_bytes)
            budget -= len(data)
            contents.append((info.filename, data))
    return contents


@contextlib.contextmanager
def _checked_archive(
    path: Path, max_total_bytes: int, max_members: int, max_ratio: float
) -> Iterator[tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]]:
    """The open archive and its files, once they pass the limits of :func:`read_zip_members`.

    Reading a member never yields more than its declared size (``zipfile`` stops there), so
    the declared sizes checked here bound what the members unpack to.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DicomError(f"{path}: not a readable zip archive ({exc})") from exc
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        _check_zip_limits(path, members, max_total_bytes, max_members, max_ratio)
        yield archive, members


def _check_zip_limits(path, members, max_total_bytes, max_members, max_ratio) -> None:
    if len(members) > max_members:
        raise DicomError(
            f"{path}: the zip holds {len(members)} files, more than max_members={max_members}"
        )
    declared = sum(info.file_size for info in members)
    if declared > max_total_bytes:
        raise DicomError(
            f"{path}: the zip unpacks to {declared} bytes, more than "
            f"max_total_bytes={max_total_bytes}"
        )
    for info in members:
        if info.flag_bits & 0x1:
            raise DicomError(f"{path}: member {info.filename!r} is encrypted")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_CHECK_MIN_BYTES and ratio > max_ratio:
            raise DicomError(
                f"{path}: member {info.filename!r} has a compression ratio of {ratio:.0f}:1, "
                f"above max_ratio={max_ratio:g} (a zip bomb?)"
            )


def _read_member(archive, info, budget: int, path: Path, max_total_bytes: int) -> bytes:
    chunks = []
    read = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_READ_CHUNK_BYTES):
                read += len(chunk)
                if read > budget:
                    raise DicomError(
                        f"{path}: the zip unpacks to more than max_total_bytes={max_total_bytes}"
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
        raise DicomError(f"{path}: cannot unpack member {info.filename!r} ({exc})") from exc
    return b"".join(chunks)


@contextlib.contextmanager
def _sources(path: Path, **zip_limits) -> Iterator[list[tuple[str, Source]]]:
    """``(name, source)`` of every file under ``path``; a zip stays open while in use."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        yield [(str(p.relative_to(path)), p) for p in files]
    elif zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        with _checked_archive(path, **zip_limits) as (archive, members):
            yield [(info.filename, _ZipMember(archive, info)) for info in members]
    else:
        yield [(path.name, path)]


def _open(source: Source):
    """A binary stream of ``source`` (the caller closes it)."""
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, _ZipMember):
        return source.archive.open(source.info)
    return open(source, "rb")


def _read_headers(sources) -> list[_SliceFile]:
    slices, not_dicom, no_geometry = [], 0, 0
    for name, source in sources:
        try:
            with _open(source) as stream:
                header = pydicom.dcmread(
                    stream, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS)
                )
        except (zipfile.BadZipFile, EOFError) as exc:  # a damaged archive: not a skippable file
            raise DicomError(f"cannot unpack member {name!r} of the zip ({exc})") from exc
        except InvalidDicomError:
            not_dicom += 1
            continue
        except Exception as exc:  # noqa: BLE001 - a corrupt file is skipped like a missing one
            logger.warning("skipping unreadable DICOM file %s: %s", name, exc)
            not_dicom += 1
            continue
        if "ImagePositionPatient" not in header or "ImageOrientationPatient" not in header:
            no_geometry += 1
            continue
        slices.append(_SliceFile(name, source, header))
    logger.debug(
        "%d image slices, %d non-DICOM files, %d without geometry (DICOMDIR, reports…)",
        len(slices),
        not_dicom,
        no_geometry,
    )
    return slices


def _largest_series(slices: list[_SliceFile], path: Path) -> tuple[str, list[_SliceFile]]:
    groups: dict[str, list[_SliceFile]] = defaultdict(list)
    for item in slices:
        groups[str(item.header.get("SeriesInstanceUID", ""))].append(item)
    if not groups:
        raise DicomError(f"{path}: no DICOM image slices found")
    uid = max(sorted(groups), key=lambda key: len(groups[key]))
    if len(groups) > 1:
        counts = ", ".join(f"{key or '(no UID)'}: {len(groups[key])}" for key in sorted(groups))
        logger.info("%s holds %d series (%s); using %s", path, len(groups), counts, uid)
    return uid, groups[uid]


def _check_consistency(slices: list[_SliceFile], uid: str, path: Path) -> None:
    if len(slices) < 2:
        raise DicomError(
            f"{path}: a 3-D series needs ≥2 slices, found {len(slices)} in series {uid or '?'} "
            "(a single 2-D image is not a CT volume)"
        )
    sizes = Counter((int(s.header.Rows), int(s.header.Columns)) for s in slices)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}×{c} in {n} file(s)" for (r, c), n in sizes.most_common())
        raise DicomError(f"{path}: inconsistent rows/columns in series {uid}: {listed}")
    frames = {int(s.header.get("NumberOfFrames", 1) or 1) for s in slices}
    if frames != {1}:
        raise DicomError(f"{path}: multi-frame (enhanced) DICOM is not supported")
    orientations = np.array([[float(v) for v in s.header.ImageOrientationPatient] for s in slices])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        raise DicomError(f"{path}: ImageOrientationPatient differs between slices of {uid}")
    if any("PixelSpacing" not in s.header for s in slices):
        raise DicomError(f"{path}: PixelSpacing is missing in series {uid}")
    spacings = np.array([[float(v) for v in s.header.PixelSpacing] for s in slices])
    if np.abs(spacings - spacings[0]).max() > 1e-3 or (spacings[0] <= 0).any():
        raise DicomError(f"{path}: PixelSpacing must be > 0 and the same in every slice")


def _slice_normal(header) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cosines = np.array([float(v) for v in header.ImageOrientationPatient])
    along_row = cosines[:3] / np.linalg.norm(cosines[:3])
    along_column = cosines[3:] / np.linalg.norm(cosines[3:])
    normal = np.cross(along_row, along_column)
    return along_row, along_column, normal / np.linalg.norm(normal)


def _check_positions(
    positions: np.ndarray, distances: np.ndarray, normal: np.ndarray, path: Path, rules: dict
) -> float:
    """Check slice positions (sorted along the normal); return the slice step in mm."""
    travel = positions[-1] - positions[0]
    along = float(travel @ normal)
    off_normal = float(np.linalg.norm(travel - along * normal))
    tilt = float(np.degrees(np.arctan2(off_normal, along)))
    if tilt > rules["max_tilt_degrees"]:
        raise DicomError(
            f"{path}: gantry tilt: slice positions run {tilt:.1f}° off the slice normal "
            f"(limit {rules['max_tilt_degrees']}°); resample to an untilted grid first "
            "(e.g. dcm2niix corrects tilt)"
        )
    steps = np.diff(distances)
    if (steps < 1e-3).any():
        where = int(np.argmax(steps < 1e-3))
        raise DicomError(
            f"{path}: two slices at the same position {distances[where]:.2f} mm along the "
            "slice normal; the series mixes acquisitions or phases"
        )
    median = float(np.median(steps))
    if (steps > 1.5 * median).any():
        where = int(np.argmax(steps > 1.5 * median))
        raise DicomError(
            f"{path}: missing slice(s): a gap of {steps[where]:.2f} mm between positions "
            f"{distances[where]:.2f} and {distances[where + 1]:.2f} mm along the slice normal "
            f"(after slice {where + 1} of {len(distances)}), more than 1.5× the median "
            f"spacing of {median:.2f} mm"
        )
    tolerance = max(rules["spacing_tolerance"] * median, 1e-3)
    if np.abs(steps - median).max() > tolerance:
        raise DicomError(
            f"{path}: uneven slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm "
            f"(median {median:.3f} mm, tolerance ±{tolerance:.3f} mm); resample to even spacing"
        )
    return (distances[-1] - distances[0]) / (len(distances) - 1)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pixels_in_hu(item: _SliceFile, path: Path, shape: tuple[int, int]) -> np.ndarray:
    syntax = item.header.file_meta.get("TransferSyntaxUID", "unknown")
    try:
        with _open(item.source) as stream:
            dataset = pydicom.dcmread(stream)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a damaged member or file
        raise DicomError(f"{path}: cannot read {item.name} ({_first_line(exc)})") from exc
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for undecodable data
        raise DicomError(
            f"{path}: cannot decode the pixel data of {item.name}: transfer syntax "
            f"{getattr(syntax, 'name', syntax)} ({syntax}) ({_first_line(exc)}); install a decoder "
            "(pylibjpeg, pylibjpeg-openjpeg or python-gdcm) or convert the series to "
            "uncompressed DICOM"
        ) from exc
    if pixels.shape != shape:
        raise DicomError(f"{path}: {item.name} holds {pixels.shape} pixels, expected {shape}")
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return (pixels.astype(np.float64) * slope + intercept).astype(np.float32)


def read_dicom_series(
    path: str | Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_ZIP_MEMBERS,
    max_ratio: float = DEFAULT_MAX_RATIO,
    max_tilt_degrees: float = 0.5,
    spacing_tolerance: float = 0.05,
) -> DicomSeries:
    """Assemble the largest series found under ``path`` into float32 HU and a RAS+ affine.

    Every file is tried; files that are not DICOM (readme, DICOMDIR, reports) are skipped
    quietly. Slices are grouped by SeriesInstanceUID and the series with most slices is taken
    (logged when there are several). Slices are sorted by their position along the slice
    normal (the cross product of the two ImageOrientationPatient directions), and the slice
    step is measured from the positions, not taken from SliceThickness.

    Args:
        path: a folder (searched recursively), a ``.zip`` archive or one DICOM file.
        max_total_bytes: zip only: see :func:`read_zip_members`.
        max_members: zip only: see :func:`read_zip_members`.
        max_ratio: zip only: see :func:`read_zip_members`.
        max_tilt_degrees: the largest angle between the slice stacking direction and the
            slice normal accepted (gantry tilt).
        spacing_tolerance: the largest deviation of one slice step from the median step,
            as a fraction of the median.

    Raises:
        DicomError: no slices, fewer than 2 slices, inconsistent rows/columns or orientation,
            missing slices (a gap > 1.5× the median step), uneven spacing, gantry tilt,
            undecodable compressed pixel data, or a zip that breaks the limits.
    """
    path = Path(path)
    if not path.exists():
        raise DicomError(f"{path}: file or folder not found")
    limits = {"max_total_bytes": max_total_bytes, "max_members": max_members,
              "max_ratio": max_ratio}  # fmt: skip
    with _sources(path, **limits) as sources:
        return _assemble(path, _read_headers(sources), max_tilt_degrees, spacing_tolerance)


def _assemble(
    path: Path, found: list[_SliceFile], max_tilt_degrees: float, spacing_tolerance: float
) -> DicomSeries:
    """The largest series of ``found`` checked, ordered and read into HU with its affine."""
    uid, slices = _largest_series(found, path)
    _check_consistency(slices, uid, path)
    along_row, along_column, normal = _slice_normal(slices[0].header)
    positions = np.array([[float(v) for v in s.header.ImagePositionPatient] for s in slices])
    order = np.argsort(positions @ normal, kind="stable")
    positions, slices = positions[order], [slices[i] for i in order]
    rules = {"max_tilt_degrees": max_tilt_degrees, "spacing_tolerance": spacing_tolerance}
    step = _check_positions(positions, positions @ normal, normal, path, rules)

    rows, columns = int(slices[0].header.Rows), int(slices[0].header.Columns)
    array = np.empty((columns, rows, len(slices)), dtype=np.float32)
    for index, item in enumerate(slices):
        array[:, :, index] = _pixels_in_hu(item, path, (rows, columns)).T
    row_spacing, column_spacing = (float(v) for v in slices[0].header.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = along_row * column_spacing  # array axis 0: column index
    lps[:3, 1] = along_column * row_spacing  # array axis 1: row index
    lps[:3, 2] = normal * step
    lps[:3, 3] = positions[0]
    description = str(slices[0].header.get("SeriesDescription", ""))
    return DicomSeries(array, _LPS_TO_RAS @ lps, uid, description)
