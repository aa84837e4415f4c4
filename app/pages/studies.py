"""HTML pages of the studies area: filled in by the studies work."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
