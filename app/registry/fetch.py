"""Resumable downloads, mirrors and the first-download checksum record of ``models pull``.

- :func:`resumable_download` streams a link into a partial file that survives an interrupted
  run: the next run asks for the rest (HTTP ``Range``) when the link is the same, and starts
  over when the server ignores the range. A web page (``text/html``, as a Dropbox share link
  without ``?dl=1`` answers) is refused before its body is read.
- :func:`on_mirror` points a registered link at another server (``--base-url``,
  ``SYNTUMOR_MODELS_BASE_URL``) keeping its path, after the Dropbox ``?dl=1`` rewrite, so a
  local server can stand in for Dropbox in tests and air-gapped sites.
- :func:`recorded_sha256` / :func:`record_sha256`: the SHA-256 of a model's first successful
  download, kept in ``<data_dir>/models/checksums.json``; every later download of that model
  must have the same digest (trust on first use).

Example:
    >>> resumable_download("https://example.org/m.pt", Path("var/m.part"))  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import os
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.registry.download import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_TIMEOUT_S,
    DownloadError,
    ProgressCallback,
    check_download_url,
    direct_download_url,
    write_json_atomically,
)

BASE_URL_ENV = "SYNTUMOR_MODELS_BASE_URL"
CHECKSUMS_FILE = "checksums.json"
_CHUNK_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
HTML_REFUSAL = (
    "the server answered a web page (text/html), not a checkpoint file: a Dropbox share link "
    "must ask for the file (add ?dl=1, or use its dl.dropboxusercontent.com form)"
)


def downloads_folder(data_dir: str | os.PathLike[str]) -> Path:
    """Where partial downloads wait to be resumed: ``<data_dir>/models/.downloads``."""
    return Path(data_dir) / "models" / ".downloads"


def on_mirror(url: str, base_url: str | None) -> str:
    """The direct form of ``url`` (Dropbox ``?dl=1``), moved to ``base_url``'s server if given.

    Args:
        url: a registered link.
        base_url: ``http(s)://host[:port][/prefix]``; the link's path and query are appended
            to it. ``None`` or empty: the link itself.

    Example:
        >>> on_mirror("https://www.dropbox.com/s/ab/model.pt", "http://127.0.0.1:8080/mirror")
        'http://127.0.0.1:8080/mirror/s/ab/model.pt?dl=1'
    """
    direct = direct_download_url(url)
    if not base_url:
        return direct
    base = urllib.parse.urlsplit(check_download_url(base_url))
    parts = urllib.parse.urlsplit(direct)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def _marker(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def discard_partial(partial: Path) -> None:
    """Remove a partial download and its marker (after success, or a refused file)."""
    partial.unlink(missing_ok=True)
    _marker(partial).unlink(missing_ok=True)


def _resume_from(partial: Path, url: str) -> int:
    """Bytes already here for ``url`` (0 when there is no partial file of that link)."""
    try:
        marker = json.loads(_marker(partial).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = {}
    if marker.get("url") != url or not partial.is_file():
        discard_partial(partial)
        return 0
    return partial.stat().st_size


def _open(url: str, start: int, timeout_s: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": "syntumor-models"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)


def _expected_total(response: http.client.HTTPResponse, start: int) -> tuple[int, int | None]:
    """(offset the body starts at, total size or ``None``) from a 200 or 206 answer."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != start:
            raise DownloadError(
                f"the server answered a range that is not the one asked for (bytes {start}-): "
                f"{response.headers.get('Content-Range')!r}"
            )
        total = match.group(3)
        return start, int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _stream(url: str, partial: Path, progress: ProgressCallback | None, max_bytes: int,
            timeout_s: float) -> int:  # fmt: skip
    start = _resume_from(partial, url)
    try:
        response = _open(url, start, timeout_s)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not start:  # 416: the range is past the end; start over
            raise
        discard_partial(partial)
        start, response = 0, _open(url, 0, timeout_s)
    with response:
        if response.headers.get_content_type() == "text/html":
            discard_partial(partial)
            raise DownloadError(f"refused {url}: {HTML_REFUSAL}")
        offset, total = _expected_total(response, start)
        if total is not None and total > max_bytes:
            raise DownloadError(
                f"{url} is {total} bytes, over the download limit of {max_bytes} bytes"
            )
        started = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomically(_marker(partial), {"url": url, "total": total, "started_at": started})
        received = offset
        with partial.open("ab" if offset else "wb") as out:
            if progress:
                progress(received, total)
            while chunk := response.read(_CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f"{url} passed the download limit of {max_bytes} bytes")
                out.write(chunk)
                if progress:
                    progress(received, total)
    if total is not None and received != total:
        raise DownloadError(
            f"download from {url} broke off after {received} of {total} bytes: run the same "
            "command again to resume it"
        )
    return received


def resumable_download(
    url: str,
    partial: Path,
    progress: ProgressCallback | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Download ``url`` into ``partial``, continuing an earlier interrupted download of it.

    Redirects are followed (the ``Range`` header goes along). A failure of the network keeps
    the bytes received for the next call; a refused answer (web page, size limit, HTTP error)
    removes them.

    Args:
        url: an ``http(s)`` link.
        partial: the file to fill; a marker ``<partial>.json`` records which link it holds.
        progress: called with (bytes so far, total or ``None``).
        max_bytes: refuse anything larger.
        timeout_s: timeout of each blocking network operation.

    Returns:
        The size of the complete file.

    Raises:
        DownloadError: host unreachable, HTTP error, timeout, a web page, size limit, or a
            body cut short (then resumable).
    """
    host = urllib.parse.urlsplit(check_download_url(url)).netloc
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _stream(url, partial, progress, max_bytes, timeout_s)
    except urllib.error.HTTPError as error:
        discard_partial(partial)
        raise DownloadError(
            f"download from {url} failed: HTTP {error.code} {error.reason}"
        ) from None
    except urllib.error.URLError as error:
        raise DownloadError(
            f"cannot reach {host} ({error.reason}): check your internet connection, "
            "or pass --url / --base-url with a mirror"
        ) from None
    except TimeoutError:
        raise DownloadError(
            f"download from {host} timed out after {timeout_s:g} s: run it again to resume"
        ) from None
    except (http.client.HTTPException, ConnectionError) as error:
        raise DownloadError(
            f"download from {host} broke off ({type(error).__name__}): run it again to resume"
        ) from None
    except DownloadError as error:
        if "limit" in str(error):
            discard_partial(partial)
        raise


def extract_member(archive_path: Path, member: str, out: Path, max_bytes: int) -> bool:
    """Copy one regular file of a tar archive into ``out`` by content (never by its name).

    Returns:
        Whether the archive holds ``member``.

    Raises:
        DownloadError: not a tar archive, or the member is larger than ``max_bytes``.
    """
    if not tarfile.is_tarfile(archive_path):
        raise DownloadError("the download is not a tar archive (expected runs/<name>/model.pt)")
    with tarfile.open(archive_path) as archive:
        try:
            info = archive.getmember(member)
        except KeyError:
            return False
        stream = archive.extractfile(info) if info.isfile() else None
        if stream is None:
            return False
        if info.size > max_bytes:
            raise DownloadError(f"{member} in the archive is over {max_bytes} bytes")
        with out.open("wb") as target:
            while block := stream.read(_CHUNK_BYTES):
                target.write(block)
    return True


def _checksums_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "models" / CHECKSUMS_FILE


def _read_checksums(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = _checksums_path(data_dir)
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DownloadError(f"cannot read the checksum record {path}: {error}") from None
    return document if isinstance(document, dict) else {}


def recorded_sha256(data_dir: str | os.PathLike[str], name: str) -> str | None:
    """The SHA-256 recorded at model ``name``'s first successful download, if any."""
    record = _read_checksums(data_dir).get(name)
    return record.get("sha256") if isinstance(record, dict) else None


def record_sha256(data_dir: str | os.PathLike[str], name: str, sha256: str, source: str) -> None:
    """Record a model's digest at its first successful download (a later call keeps the first)."""
    document = _read_checksums(data_dir)
    if name in document:
        return
    document[name] = {"sha256": sha256, "source": source,
                      "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    write_json_atomically(_checksums_path(data_dir), document)
