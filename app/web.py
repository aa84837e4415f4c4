"""Shared helpers of the HTML pages: templates, the signed-in user, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.accounts import auth
from app.db.tables import Role, User
from syntumor_core.segmentation.options import (
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_MODE,
    DEFAULT_OVERLAP,
    MODES,
)

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
templates = Jinja2Templates(directory=TEMPLATES_DIR)
# the core's segmentation defaults, in every page's context, for the forms that start
# segmentations and evaluations (an untouched form asks for what the API and the CLI default to)
templates.env.globals.update(
    default_overlap=DEFAULT_OVERLAP,
    default_min_lesion_mm3=DEFAULT_MIN_LESION_MM3,
    default_mode=DEFAULT_MODE,
    segmentation_modes=MODES,
)


class LoginRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the login page."""


def page_user(request: Request) -> User | None:
    """The signed-in user of a page request (cookie only; no CSRF check on GET)."""
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    with request.app.state.session_factory() as session:
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            return None
        session.expunge(user)
        return user


def render(request: Request, template: str, status_code: int = 200, **context: Any):
    """Render a page with the user, the CSRF token and the navigation in its context."""
    user = context.pop("user", None) or page_user(request)
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "csrf_token": auth.csrf_token(request),
            "is_admin": bool(user and user.role == Role.ADMIN),
            "is_researcher": bool(user and user.role in (Role.ADMIN, Role.RESEARCHER)),
            **context,
        },
        status_code=status_code,
    )


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
    return render(request, "error.html", status_code=status, status=status, detail=detail)


def require_page_roles(request: Request, *roles: str) -> User:
    """The page's user if they have one of ``roles``; else redirect to login / a 403 page."""
    from fastapi import HTTPException

    user = page_user(request)
    if user is None:
        raise HTTPException(401, "log in first")
    if roles and user.role not in roles:
        raise HTTPException(403, f"this page needs the role {' or '.join(roles)}")
    return user
