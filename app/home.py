"""The main pages: home, login/logout; the work pages are included from their modules.

- :mod:`app.volumes.pages`: upload, the volume list, the volume page (viewer, segment form);
- :mod:`app.processing.pages`: segmentation and synthesis results, the synthesis form, jobs;
- :mod:`app.realism.pages`: the published realism report (``syntumor realism --publish``).
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from app.accounts import auth, throttle
from app.errors import TooManyRequests
from app.processing import pages as results
from app.realism import pages as realism
from app.volumes import pages as volumes
from app.web import page_user, render

router = APIRouter(include_in_schema=False)
router.include_router(volumes.router)
router.include_router(results.router)
router.include_router(realism.router)


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect to another site after login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/")
def home(request: Request):
    return render(request, "home.html")


@router.get("/login")
def login_form(request: Request, next: str | None = None):
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login_submit(
    request: Request,
    username: str = Form(max_length=64),
    password: str = Form(max_length=256),
    csrf_token: str = Form(""),
    next: str = Form("/"),
):
    auth.check_csrf(request, csrf_token)
    try:
        throttle.check_login(request, username)
    except TooManyRequests as refused:
        page = render(request, "login.html", status_code=429, next=_safe_next(next),
                      error=f"Too many failed logins: {refused.detail.split(': ')[-1]}.")  # fmt: skip
        page.headers.update(refused.headers or {})
        return page
    with request.app.state.session_factory() as session:
        user = auth.authenticate(session, username, password)
    if user is None:
        throttle.login_failed(request, username)
        return render(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            error="Wrong user name or password.",
        )
    throttle.login_succeeded(request, username)
    auth.login_session(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")):
    if page_user(request) is not None:
        auth.check_csrf(request, csrf_token)
    auth.logout_session(request)
    return RedirectResponse("/login", status_code=303)
