"""``/api/v1/studies``: filled in by the studies work."""

from fastapi import APIRouter

router = APIRouter(tags=["studies"])
