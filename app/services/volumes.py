"""Volumes: register stored files as rows, list, delete; the bridge storage ↔ database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Segmentation, Synthesis, Volume
from app.storage import Storage, StoredFile
from syntumor_core.volume import Volume as CoreVolume


def find_duplicate(session: Session, sha256: str, kind: str) -> Volume | None:
    return session.scalar(
        select(Volume).where(Volume.sha256 == sha256, Volume.kind == kind).order_by(Volume.id)
    )


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
    existing = find_duplicate(session, stored.sha256, kind)
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


def count(session: Session, query) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery()))


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
    session.flush()
    still_used = set(session.scalars(select(Volume.path).where(Volume.path.in_(paths))))
    session.commit()
    for path in paths - still_used - {None}:
        storage.remove_unreferenced(path)
