"""Shared pieces of the API: pagination, lookups that 404, serialisers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Query
from pydantic import AfterValidator, BaseModel, ValidationInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import MAX_DB_INT, Count, DbInt, Id  # noqa: F401  (defined with the database)
from app.db.tables import Job, Volume
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES

T = TypeVar("T")
MAX_PAGE = 200


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: int = Query(50, ge=1, le=MAX_PAGE, description="Items per page."),
    offset: Annotated[Count, Query(description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


def paginate(session: Session, query, page: PageParams, serialise) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.limit(page.limit).offset(page.offset)).all()
    return {
        "items": [serialise(row) for row in rows],
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
    }


def get_or_404(session: Session, model: type[T], row_id: int, what: str) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise HTTPException(404, f"{what} {row_id} not found")
    return row


def volume_json(volume: Volume) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.name,
        "kind": volume.kind,
        "source": volume.source,
        "sha256": volume.sha256,
        "size_bytes": volume.size_bytes,
        "shape": volume.shape,
        "spacing_mm": volume.spacing,
        "image_id": volume.image_id,
        "labels": (volume.meta or {}).get("labels"),
        "format": (volume.meta or {}).get("format"),
        "created_at": volume.created_at.isoformat(),
        "download_url": f"/api/v1/volumes/{volume.id}/file",
    }


def job_json(job: Job, *, with_log: bool = False) -> dict[str, Any]:
    data = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress, 4),
        "message": job.message,
        "error": job.error,
        "result": job.result,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    if with_log:
        data["log"] = job.log
    return data


def _one_of(options: Collection[str]) -> AfterValidator:
    """A field validator refusing values outside ``options``, naming the field and the choices."""

    def check(value: str, info: ValidationInfo) -> str:
        if value not in options:
            raise ValueError(f"{info.field_name} must be one of {', '.join(sorted(options))}")
        return value

    return AfterValidator(check)


ArchName = Annotated[str, _one_of(ARCHITECTURES)]
OrganName = Annotated[str, _one_of(ORGAN_PROFILES)]
ProfileName = Annotated[str, _one_of(PROFILES)]
