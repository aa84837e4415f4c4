"""HTML pages of the admin area: filled in by the admin work."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
