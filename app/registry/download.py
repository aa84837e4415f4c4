"""Fetching checkpoint files safely: streamed downloads, staging files, verification.

The pieces :mod:`app.registry.catalog` builds ``syntumor models pull`` and ``add`` from. Nothing
here knows about the registry. A file only reaches its final place after
:func:`verify_checkpoint` accepted it, and by an atomic move from a staging file in the same
folder, so a failed, corrupt or malicious download leaves nothing behind.

Downloads themselves (resumable, Dropbox links made direct) are :mod:`app.registry.fetch`'s.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from syntumor_core.errors import CheckpointError, ParameterError, SynTumorError

logger = logging.getLogger(__name__)

CHECKPOINT_FILE_NAME = "model.pt"
DEFAULT_MAX_DOWNLOAD_BYTES = 4 * 1024**3  # Swin base with an optimizer state is about 0.75 GB
DEFAULT_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes received so far, total bytes or ``None`` when the server sends none)."""


class DownloadError(SynTumorError):
    """A download failed: no network, an HTTP error, a size limit, or an unusable archive."""


def check_download_url(url: str) -> str:
    """Accept only absolute ``http://`` or ``https://`` links.

    Args:
        url: the link.

    Raises:
        ParameterError: any other scheme (``file:``, ``ftp:``) or a link without a host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParameterError(f"download URL must start with http:// or https://, got {url!r}")
    return url


def direct_download_url(url: str) -> str:
    """Turn a Dropbox share link (``?dl=0`` answers a web page) into its direct one (``dl=1``).

    Args:
        url: an ``http(s)`` link; links to other hosts are returned unchanged.
    """
    parts = urllib.parse.urlsplit(check_download_url(url))
    host = parts.hostname or ""
    if host != "dropbox.com" and not host.endswith(".dropbox.com"):
        return url
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(key, value) for key, value in query if key != "dl"] + [("dl", "1")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@contextmanager
def staging_file(folder: Path) -> Iterator[Path]:
    """A temporary file in ``folder`` (same file system, so ``os.replace`` is atomic).

    The file is always removed on exit (moved away or not); ``folder`` too if this call
    created it and it is empty again, so a failed download leaves nothing behind.

    Args:
        folder: where the file is to end up.
    """
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE_NAME}.", suffix=".part", dir=folder)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
        if created:
            with suppress(OSError):  # it holds the installed file, or another staging file
                folder.rmdir()


def write_json_atomically(path: Path, document: Any) -> None:
    """Write ``document`` as indented JSON to a temporary file, then move it onto ``path``.

    Args:
        path: the target file (its folder is created).
        document: anything ``json.dump`` takes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
            stream.write("\n")
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def _copy_limited(source: BinaryIO, target: Path, max_bytes: int, what: str) -> None:
    copied = 0
    with target.open("wb") as out:
        while block := source.read(_CHUNK_BYTES):
            copied += len(block)
            if copied > max_bytes:
                raise DownloadError(f"{what} in the downloaded archive is over {max_bytes} bytes")
            out.write(block)


def _one_checkpoint_member(names: list[str]) -> str:
    found = [name for name in names if PurePosixPath(name).name == CHECKPOINT_FILE_NAME]
    if len(found) != 1:
        raise DownloadError(
            f"the downloaded archive must hold exactly one {CHECKPOINT_FILE_NAME}, "
            f"found {len(found)}" + (f" ({', '.join(found[:5])})" if found else "")
        )
    return found[0]


def unpack_checkpoint(downloaded: Path, unpacked: Path, max_bytes: int) -> Path:
    """The checkpoint inside a download: a tar or zip archive's one ``model.pt``, or the file.

    A torch checkpoint is itself a zip archive (with a ``data.pkl`` member) and is returned
    as it is. Members are copied by content into ``unpacked``; their names are never used as
    paths, so an archive cannot write outside the staging folder.

    Args:
        downloaded: the downloaded file.
        unpacked: where to put an extracted ``model.pt``.
        max_bytes: size limit of the extracted file.

    Returns:
        ``unpacked`` if something was extracted, else ``downloaded``.

    Raises:
        DownloadError: a web page instead of a file, an archive with no or several
            ``model.pt`` members, or one too large.
    """
    with downloaded.open("rb") as stream:
        start = stream.read(512).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        raise DownloadError(
            "the server answered a web page, not a checkpoint file (a share or login page? "
            "use the file's direct download link)"
        )
    if tarfile.is_tarfile(downloaded):
        with tarfile.open(downloaded) as archive:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
            chosen = _one_checkpoint_member(list(members))
            stream = archive.extractfile(members[chosen])
            if stream is None:  # only for links and devices, which were filtered out
                raise DownloadError(f"cannot read {chosen} in the downloaded archive")
            _copy_limited(stream, unpacked, max_bytes, chosen)
        return unpacked
    if zipfile.is_zipfile(downloaded):
        with zipfile.ZipFile(downloaded) as archive:
            names = archive.namelist()
            if any(PurePosixPath(name).name == "data.pkl" for name in names):
                return downloaded  # torch.save's own zip layout
            chosen = _one_checkpoint_member(names)
            with archive.open(chosen) as stream:
                _copy_limited(stream, unpacked, max_bytes, chosen)
        return unpacked
    return downloaded


def verify_checkpoint(
    candidate: Path, arch: str, expected_sha256: str | None, what: str
) -> dict[str, Any]:
    """Load a file with :func:`~syntumor_core.checkpoints.load_model` (safe, strict) as ``arch``.

    Args:
        candidate: the staged file.
        arch: the architecture it must load into.
        expected_sha256: the digest it must have, if known.
        what: how to name the file's origin in an error ("the download of 'x' from URL").

    Returns:
        Facts for the model's ``config.json``: sha256, epoch, best_acc, num_parameters.

    Raises:
        CheckpointError: unsafe, unreadable or mismatched file, or another digest.
    """
    from syntumor_core.checkpoints import load_model

    try:
        _, info = load_model(candidate, arch=arch)
    except CheckpointError as error:  # name the origin, not the staging file
        reason = str(error).replace(f" {candidate}", "").replace(str(candidate), "it")
        raise CheckpointError(f"refused {what}: {reason}") from None
    if expected_sha256 is not None and info.sha256 != expected_sha256:
        raise CheckpointError(
            f"refused {what}: its sha256 {info.sha256} is not the registered {expected_sha256}"
        )
    return {
        "sha256": info.sha256,
        "epoch": info.epoch,
        "best_acc": info.best_acc,
        "num_parameters": info.num_parameters,
    }


def install_checkpoint(candidate: Path, target: Path, config: dict[str, Any]) -> None:
    """Move a verified file onto ``target`` (atomic) and write ``config.json`` beside it.

    Args:
        candidate: the verified staging file (same folder as ``target``).
        target: the final ``model.pt``.
        config: what to record about it; ``installed_at`` (UTC) is added.
    """
    os.replace(candidate, target)
    installed_at = datetime.now(UTC).isoformat(timespec="seconds")
    write_json_atomically(target.parent / "config.json", {**config, "installed_at": installed_at})
