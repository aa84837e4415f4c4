"""Shared pieces of the API: pagination, lookups that 404, validators of names, the OpenAPI
entry of a file answer."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import AfterValidator, BaseModel, Field, ValidationInfo
from pydantic.fields import FieldInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import MAX_DB_INT, Count, DbInt, Id  # noqa: F401  (defined with the database)
from app.errors import NotFound
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES

T = TypeVar("T")
MAX_PAGE = 200


def as_utc(value: datetime | None) -> datetime | None:
    """A time from the database, in UTC: the tables store UTC, and SQLite hands the times back
    without their zone."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its zone (``2026-12-07T07:19:06.190955Z``), as the response models
    send times."""
    value = as_utc(value)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# A time in a response model: always with its zone (RFC 3339 ``date-time``).
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class Page(BaseModel, Generic[T]):
    """One page of a list: its ``items``, how many there are in all, and where the page is."""

    items: list[T]
    total: int = Field(description="Items in the whole list.")
    limit: int = Field(description="Items per page, as asked.")
    offset: int = Field(description="Items skipped, as asked.")


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: int = Query(50, ge=1, le=MAX_PAGE, description="Items per page."),
    offset: Annotated[Count, Query(description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]


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
        raise NotFound(f"{what} {row_id} not found")
    return row


def _one_of(options: Collection[str]) -> tuple[AfterValidator, FieldInfo]:
    """A field validator refusing values outside ``options``, naming the field and the choices;
    the choices are the field's ``enum`` in OpenAPI."""

    def check(value: str, info: ValidationInfo) -> str:
        if value not in options:
            raise ValueError(f"{info.field_name} must be one of {', '.join(sorted(options))}")
        return value

    return AfterValidator(check), Field(json_schema_extra={"enum": list(options)})


ArchName = Annotated[str, *_one_of(ARCHITECTURES)]
OrganName = Annotated[str, *_one_of(ORGAN_PROFILES)]
ProfileName = Annotated[str, *_one_of(PROFILES)]


def file_responses(description: str, *media_types: str, schema: dict | None = None) -> dict:
    """The ``responses=`` entry of a route answering a file (not JSON): its media types."""
    content = {media: ({"schema": schema} if schema else {}) for media in media_types}
    return {200: {"content": content, "description": description}}
