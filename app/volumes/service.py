"""Volumes: register stored files as rows, list, delete; the bridge storage ↔ database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.db.tables import Job, JobStatus, Role, Segmentation, Synthesis, User, Volume
from app.volumes.storage import Storage, StoredFile
from syntumor_core.errors import VolumeError
from syntumor_core.volume import Volume as CoreVolume
from syntumor_core.volume import check_resampled_size

BUDGET_HINT = "; crop or downsample the volume, or ask an admin to raise SYNTUMOR_MAX_VOXELS"


def find_duplicate(
    session: Session, sha256: str, kind: str, image_id: int | None = None
) -> Volume | None:
    """The stored volume with the same bytes and kind (a label map: also of the same image)."""
    query = select(Volume).where(Volume.sha256 == sha256, Volume.kind == kind)
    if kind == "label":
        query = query.where(Volume.image_id == image_id)
    return session.scalar(query.order_by(Volume.id))


def register(
    session: Session,
    stored: StoredFile,
    *,
    name: str,
    kind: str = "image",
    source: str = "upload",
    owner_id: int | None = None,
    image_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[Volume, bool]:
    """Add a row for a stored file; returns (row, created). Same bytes → the existing row."""
    existing = find_duplicate(session, stored.sha256, kind, image_id)
    if existing is not None:
        return existing, False
    extra = {"format": stored.source_format, **(meta or {})}
    if stored.dicom_zip:
        extra["dicom_zip"] = stored.dicom_zip
    row = Volume(
        name=name,
        kind=kind,
        source=source,
        sha256=stored.sha256,
        path=stored.path,
        size_bytes=stored.size_bytes,
        shape=list(stored.shape),
        spacing=list(stored.spacing),
        meta=extra,
        image_id=image_id,
        owner_id=owner_id,
    )
    session.add(row)
    session.flush()
    return row, True


def register_upload(
    session: Session,
    storage: Storage,
    stored: StoredFile,
    *,
    name: str,
    kind: str,
    owner_id: int | None,
    image_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[Volume, bool]:
    """Register an uploaded file and commit; returns (row, created).

    Nothing is left half-stored: when the row cannot be added, or the bytes turn out to be a
    duplicate whose row points at another file, the newly placed file goes unless a row uses it.
    """
    try:
        row, created = register(
            session, stored, name=name, kind=kind, owner_id=owner_id, image_id=image_id, meta=meta
        )
        session.commit()
    except BaseException:
        session.rollback()
        _remove_if_unused(session, storage, {stored.path, stored.dicom_zip})
        raise
    if not created:
        _remove_if_unused(session, storage, {stored.path, stored.dicom_zip})
    return row, created


def _remove_if_unused(session: Session, storage: Storage, paths: set[str | None]) -> None:
    """Delete stored files that no volume row refers to (as its file or its DICOM zip)."""
    for path in paths - {None}:
        used = session.scalar(select(func.count()).where(Volume.path == path))
        if not used and not _zip_in_use(session, path):
            storage.remove_unreferenced(path)


def _zip_in_use(session: Session, path: str) -> bool:
    if not path.endswith(".zip"):
        return False
    sha = Path(path).stem
    return bool(session.scalar(select(func.count()).where(Volume.sha256 == sha)))


def check_upload_budget(
    session: Session, storage: Storage, stored: StoredFile, *, name: str, grid_mm: float,
    max_voxels: int,
) -> None:  # fmt: skip
    """Refuse an uploaded image whose grid at ``grid_mm`` (the models' finest) would not fit the
    memory budget; its newly placed file goes (unless a stored volume has the same bytes).

    Raises:
        VolumeError: the numbers, and what to do.
    """
    try:
        check_resampled_size(stored.shape, stored.spacing, grid_mm, max_voxels=max_voxels,
                             name=name)  # fmt: skip
    except VolumeError as error:
        _remove_if_unused(session, storage, {stored.path, stored.dicom_zip})
        raise VolumeError(str(error) + BUDGET_HINT) from None


def store_core_volume(
    session: Session,
    storage: Storage,
    volume: CoreVolume,
    *,
    name: str,
    kind: str = "image",
    source: str,
    owner_id: int | None = None,
    image_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Volume:
    """Write an in-memory volume to the store and register it (or return the same bytes' row)."""
    stored = storage.store_volume(volume, label=kind == "label")
    row, _ = register(
        session,
        stored,
        name=name,
        kind=kind,
        source=source,
        owner_id=owner_id,
        image_id=image_id,
        meta=meta,
    )
    return row


STUDY_SOURCE = "study"  # a study's case, made by its preparation: seen through the study only
VOLUME_ID_KEYS = ("image_id", "label_id", "mask_id")


def visible(query, user: User):
    """A query of volumes limited to those ``user`` may see, as studies are: admins all; others
    their own and the shared library (volumes without an owner, put in by the operator), never
    a study's cases (those are reached through the study's pages)."""
    if user.role == Role.ADMIN:
        return query
    mine_or_shared = or_(Volume.owner_id == user.id, Volume.owner_id.is_(None))
    return query.where(mine_or_shared, Volume.source != STUDY_SOURCE)


def can_see(user: User, volume: Volume) -> bool:
    if user.role == Role.ADMIN:
        return True
    return volume.owner_id in (user.id, None) and volume.source != STUDY_SOURCE


def visible_volume(session: Session, volume_id: int, user: User) -> Volume | None:
    """The volume, or None when there is none or ``user`` may not see it (both answer 404)."""
    volume = session.get(Volume, volume_id)
    return volume if volume is not None and can_see(user, volume) else None


def referenced_ids(spec: Any) -> list[int]:
    """Every volume id in a request's nested JSON (``image_id``, ``label_id``, ``mask_id``)."""
    if isinstance(spec, dict):
        found = [v for k, v in spec.items() if k in VOLUME_ID_KEYS and isinstance(v, int)]
        return found + [i for v in spec.values() if isinstance(v, dict | list)
                        for i in referenced_ids(v)]  # fmt: skip
    if isinstance(spec, list):
        return [i for item in spec for i in referenced_ids(item)]
    return []


def first_hidden(session: Session, user: User, spec: Any) -> int | None:
    """The first volume id in ``spec`` of a volume that ``user`` may not see (ids of no volume
    are left to the caller's own checks)."""
    for volume_id in referenced_ids(spec):
        volume = session.get(Volume, volume_id)
        if volume is not None and not can_see(user, volume):
            return volume_id
    return None


def count(session: Session, query) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery()))


def busy_jobs(session: Session, volume: Volume) -> list[int]:
    """Ids of queued or running jobs whose request uses the volume or one of its label maps."""
    ids = [volume.id, *session.scalars(select(Volume.id).where(Volume.image_id == volume.id))]
    busy = []
    for model in (Segmentation, Synthesis):
        uses = model.image_id.in_(ids)
        if model is Synthesis:
            uses = uses | Synthesis.mask_id.in_(ids)
        query = (
            select(Job.id)
            .join(model, model.job_id == Job.id)
            .where(uses, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        )
        busy.extend(session.scalars(query))
    return sorted(busy)


def delete(session: Session, storage: Storage, volume: Volume) -> None:
    """Delete a volume, its label maps and the requests that used it; files no row uses go."""
    doomed = [volume, *session.scalars(select(Volume).where(Volume.image_id == volume.id))]
    paths = {v.path for v in doomed} | {v.meta.get("dicom_zip") for v in doomed if v.meta}
    ids = [v.id for v in doomed]
    for model in (Segmentation, Synthesis):
        columns = [model.image_id] + ([model.mask_id] if model is Synthesis else [])
        for column in columns:
            for row in session.scalars(select(model).where(column.in_(ids))):
                session.delete(row)
    for row in doomed:
        session.delete(row)
    session.commit()
    _remove_if_unused(session, storage, paths)


MAX_LEGEND_ENTRIES = 255


def parse_legend(text: str | None) -> dict[str, str] | None:
    """A label map's legend from JSON text: ``{"1": "liver", "2": "tumor"}`` (values 1-255).

    Raises:
        VolumeError: when the text is not such an object, naming what is wrong.
    """
    if text is None or not text.strip():
        return None
    try:
        legend = json.loads(text)
    except json.JSONDecodeError as error:
        raise VolumeError(f'labels must be JSON like {{"1": "liver"}}: {error.msg}') from None
    if not isinstance(legend, dict) or not legend or len(legend) > MAX_LEGEND_ENTRIES:
        raise VolumeError('labels must be a JSON object of 1-255 entries, e.g. {"1": "liver"}')
    clean: dict[str, str] = {}
    for key, name in legend.items():
        if not (isinstance(key, str) and key.isdigit() and 1 <= int(key) <= 255):
            raise VolumeError(f"label values must be whole numbers from 1 to 255, got {key!r}")
        if not (isinstance(name, str) and 1 <= len(name.strip()) <= 60):
            raise VolumeError(f"the name of label {key} must be text of 1-60 characters")
        clean[str(int(key))] = name.strip()
    return clean
