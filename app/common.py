"""Shared pieces of the API: pagination, lookups that 404, serialisers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Generic, TypeVar

from fastapi import HTTPException, Query
from pydantic import AfterValidator, BaseModel, Field, ValidationInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import MAX_DB_INT, Count, DbInt, Id  # noqa: F401  (defined with the database)
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES

T = TypeVar("T")
MAX_PAGE = 200


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
