"""``/api/v1/admin``: filled in by the admin work."""

from fastapi import APIRouter

router = APIRouter(tags=["admin"])
