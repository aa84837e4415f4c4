"""``syntumor models pull NAME | --all``: fetch published checkpoints and install them verified.

One model comes from its own link; ``--all`` fetches the registry's archive (the seed project's
``runs.tar.gz``, ``runs/<run>/model.pt`` per model) once and installs every published model
in it. Every file goes through the same gate before it is listed as available: loaded safely
and strictly as its registered architecture, its SHA-256 equal to the registered one or to
the one recorded at its first download (:mod:`app.registry.fetch`), then moved into place
atomically. A refused file replaces nothing.

Example:
    >>> pull_one("unet_synt", Path("var"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.registry import catalog as registry
from app.registry.download import (
    CHECKPOINT_FILE_NAME,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_TIMEOUT_S,
    DownloadError,
    ProgressCallback,
    staging_file,
    unpack_checkpoint,
    verify_checkpoint,
)
from app.registry.fetch import (
    BASE_URL_ENV,
    discard_partial,
    downloads_folder,
    extract_member,
    on_mirror,
    record_sha256,
    recorded_sha256,
    resumable_download,
)
from syntumor_core.errors import CheckpointError, SynTumorError


@dataclass(frozen=True)
class PullOutcome:
    """What ``--all`` did with one model: ``path`` when installed, else ``error``."""

    name: str
    path: Path | None = None
    error: str | None = None


def base_url_default(base_url: str | None) -> str | None:
    """``base_url``, else ``$SYNTUMOR_MODELS_BASE_URL``, else ``None`` (the registered hosts)."""
    return base_url or os.environ.get(BASE_URL_ENV) or None


def archive_source(registry_path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The registry's ``archive`` record: ``url`` and ``member`` (``runs/{run}/model.pt``).

    Raises:
        ModelRegistryError: the registry records no archive.
    """
    path = Path(registry_path or registry.BUILTIN_REGISTRY_PATH)
    document = json.loads(path.read_text(encoding="utf-8"))
    archive = document.get("archive")
    if not isinstance(archive, dict) or not isinstance(archive.get("url"), str):
        raise registry.ModelRegistryError(
            f"model registry {path} records no archive to pull --all from"
        )
    return {"url": archive["url"], "member": str(archive.get("member", "runs/{run}/model.pt"))}


def _install_verified(candidate: Path, entry: registry.ModelEntry, data_dir: Path, source: str,
                      what: str, **details: Any) -> Path:  # fmt: skip
    """Verify ``candidate`` (strict load, sha256) and move it into place; record its digest."""
    facts = verify_checkpoint(candidate, entry.arch, entry.sha256, what)
    first = recorded_sha256(data_dir, entry.name)
    if first is not None and facts["sha256"] != first:
        raise CheckpointError(
            f"refused {what}: its sha256 {facts['sha256']} differs from {first}, recorded at "
            f"the first download of {entry.name!r} ({data_dir / 'models' / 'checksums.json'}); "
            "nothing was replaced"
        )
    target = data_dir / "models" / entry.name / CHECKPOINT_FILE_NAME
    registry._install(candidate, entry, target, source, **facts, **details)
    record_sha256(data_dir, entry.name, facts["sha256"], source)
    return target


def _pullable(name: str, data_dir: Path, registry_path) -> registry.ModelEntry:
    entry = registry.find_entry(name, registry.all_entries(data_dir, registry_path))
    if entry.path is not None:
        raise registry.ModelRegistryError(
            f"model {name!r} ships with SynTumor ({entry.path}); there is nothing to pull"
        )
    return entry


def pull_one(
    name: str,
    data_dir: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    registry_path: str | os.PathLike[str] | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download one registered checkpoint (resumably) and install it verified.

    Args:
        name: registry name.
        data_dir: the data folder.
        progress: called with (bytes received, total or ``None``).
        url: download from this exact link instead of the registered one.
        base_url: fetch the registered link's path from this server instead (a mirror);
            default ``$SYNTUMOR_MODELS_BASE_URL``.
        registry_path: the built-in registry file (tests inject their own).
        max_bytes: refuse downloads larger than this.
        timeout_s: network timeout per blocking operation.

    Returns:
        The installed ``model.pt``.

    Raises:
        ModelRegistryError: unknown name, or nothing to download.
        DownloadError: no network, HTTP error, size limit, a web page, an unusable archive.
        CheckpointError: unsafe file, wrong architecture, or another sha256.
    """
    data_dir = Path(data_dir)
    entry = _pullable(name, data_dir, registry_path)
    if url is None and entry.url is None:
        raise registry.ModelRegistryError(
            f"no download link is recorded for model {name!r} (see the 'source' note in the "
            "registry): pass one with --url URL"
        )
    link = on_mirror(url, None) if url else on_mirror(str(entry.url), base_url_default(base_url))
    partial = downloads_folder(data_dir) / f"{entry.name}.part"
    size = resumable_download(link, partial, progress, max_bytes=max_bytes, timeout_s=timeout_s)
    what = f"the download of {name!r} from {link}"
    try:
        with staging_file(data_dir / "models" / entry.name) as unpacked:
            try:
                candidate = unpack_checkpoint(partial, unpacked, max_bytes)
            except DownloadError as error:
                raise DownloadError(f"refused {what}: {error}") from None
            if candidate == partial:  # move it beside the target, for an atomic install
                os.replace(partial, unpacked)
                candidate = unpacked
            return _install_verified(candidate, entry, data_dir, link, what, downloaded_bytes=size)
    finally:
        discard_partial(partial)


def pull_all(
    data_dir: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    *,
    url: str | None = None,
    base_url: str | None = None,
    registry_path: str | os.PathLike[str] | None = None,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES * 4,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[PullOutcome]:
    """Download the archive of all published checkpoints once and install each model in it.

    Args:
        data_dir: the data folder.
        progress: called with (bytes received, total or ``None``) for the archive.
        url: the archive's link instead of the registered one.
        base_url: a mirror server for the registered link (default ``$SYNTUMOR_MODELS_BASE_URL``).
        registry_path: the built-in registry file (tests inject their own).
        max_bytes: size limit of the archive (each member: the single-file limit).
        timeout_s: network timeout per blocking operation.

    Returns:
        One outcome per published model (those with a ``readme_log_dir``), in registry order.

    Raises:
        DownloadError: the archive could not be fetched or is not a tar archive.
    """
    data_dir = Path(data_dir)
    source = archive_source(registry_path)
    link = on_mirror(url, None) if url else on_mirror(source["url"], base_url_default(base_url))
    partial = downloads_folder(data_dir) / "archive.part"
    resumable_download(link, partial, progress, max_bytes=max_bytes, timeout_s=timeout_s)
    outcomes = []
    try:
        for entry in registry.all_entries(data_dir, registry_path).values():
            if entry.readme_log_dir is None or entry.path is not None:
                continue
            member = source["member"].format(run=PurePosixPath(entry.readme_log_dir).name)
            what = f"{member} of {link}"
            try:
                with staging_file(data_dir / "models" / entry.name) as unpacked:
                    if not extract_member(partial, member, unpacked, DEFAULT_MAX_DOWNLOAD_BYTES):
                        raise DownloadError(f"the archive {link} holds no {member}")
                    path = _install_verified(
                        unpacked, entry, data_dir, link, what, archive_member=member
                    )
                outcomes.append(PullOutcome(entry.name, path=path))
            except DownloadError as error:
                if "not a tar archive" in str(error):
                    raise DownloadError(f"refused {link}: {error}") from None
                outcomes.append(PullOutcome(entry.name, error=str(error)))
            except SynTumorError as error:
                outcomes.append(PullOutcome(entry.name, error=str(error)))
    finally:
        discard_partial(partial)
    return outcomes
