"""Account pages: one's own password (``/account``), and the users for admins (``/admin/users``).

The forms post here with their CSRF token and redirect back (303) with a notice, or render the
page again with the error (and its status) when a rule was broken. The same operations are in
the API (``/api/v1/auth/password``, ``/api/v1/users/{id}/…``) and the CLI (``syntumor users``).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from app.accounts import auth
from app.db import Id
from app.db.tables import Role, User
from app.errors import NotFound
from app.web import render, require_page_roles

router = APIRouter(include_in_schema=False)
NOTICES = {
    "password": "Password changed. Your other sessions have ended.",
    "deactivate": "Account deactivated: its sessions have ended.",
    "activate": "Account activated.",
    "tokens": "API tokens revoked.",
    "set-password": "Password set: the user's sessions have ended.",
}


@router.get("/account")
def account_page(request: Request, done: str | None = None):
    user = require_page_roles(request)
    return render(request, "account.html", user=user, notice=NOTICES.get(done or ""), error=None)


@router.post("/account/password")
def account_password(
    request: Request,
    current_password: str = Form(max_length=256),
    new_password: str = Form(max_length=256),
    csrf_token: str = Form(""),
):
    auth.check_csrf(request, csrf_token)
    user = require_page_roles(request)
    with request.app.state.session_factory() as db:
        user = db.get(User, user.id)
        error, status = None, 200
        if not auth.verify_password(current_password, user.password_hash):
            error, status = "The current password is wrong.", 403
        else:
            try:
                auth.set_password(db, user, new_password)
                db.commit()
            except auth.AuthError as problem:
                error, status = f"The new {problem}.", 422
    if error:
        return render(request, "account.html", status_code=status, notice=None, error=error)
    auth.login_session(request, user)  # this browser goes on, with a new session
    return RedirectResponse("/account?done=password", status_code=303)


def _users_page(request: Request, admin: User, *, notice=None, error=None, status_code=200):
    with request.app.state.session_factory() as db:
        users = db.scalars(select(User).order_by(User.id)).all()
        rows = [{"id": u.id, "username": u.username, "role": u.role, "is_active": u.is_active,
                 "tokens": len(u.tokens)} for u in users]  # fmt: skip
    return render(request, "admin/users.html", status_code=status_code, user=admin, users=rows,
                  notice=notice, error=error, active="users")  # fmt: skip


@router.get("/admin/users")
def users_page(request: Request, done: str | None = None):
    admin = require_page_roles(request, Role.ADMIN)
    return _users_page(request, admin, notice=NOTICES.get(done or ""))


@router.post("/admin/users/{user_id}/{action}")
def users_action(
    request: Request,
    user_id: Id,
    action: Literal["deactivate", "activate", "tokens", "set-password"],
    password: str = Form("", max_length=256),
    csrf_token: str = Form(""),
):
    auth.check_csrf(request, csrf_token)
    admin = require_page_roles(request, Role.ADMIN)
    with request.app.state.session_factory() as db:
        user = db.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        try:
            _apply(db, admin, user, action, password)
        except auth.AuthError as error:
            return _users_page(request, admin, error=f"{user.username}: {error}", status_code=422)
        db.commit()
    return RedirectResponse(f"/admin/users?done={action}", status_code=303)


def _apply(db, admin: User, user: User, action: str, password: str) -> None:
    if action == "deactivate":
        if user.id == admin.id:
            raise auth.AuthError("you cannot deactivate your own account: ask another admin")
        auth.set_active(db, user, False)
    elif action == "activate":
        auth.set_active(db, user, True)
    elif action == "tokens":
        auth.revoke_tokens(db, user)
    else:
        auth.set_password(db, user, password)
