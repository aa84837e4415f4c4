"""``/api/v1/auth`` and ``/api/v1/users``: log in and out, who am I, one's password, API tokens;
for admins the users: create, set a password, deactivate and activate, revoke their tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import deps
from app.accounts import auth, throttle
from app.common import Id, PageParams, get_or_404, page_params, paginate
from app.db.tables import ApiToken, User

router = APIRouter(tags=["accounts"])


class LoginBody(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenBody(BaseModel):
    name: str = Field("token", min_length=1, max_length=100)


class UserBody(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)
    role: str = "researcher"


NEW_PASSWORD_RULE = (
    f"At least {auth.MIN_PASSWORD_LENGTH} characters and not easy to guess (common passwords, "
    "keyboard patterns, repeats and the user name are refused)."
)


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256, description=NEW_PASSWORD_RULE)


class PasswordSet(BaseModel):
    password: str = Field(max_length=256, description=NEW_PASSWORD_RULE)


def user_json(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "is_active": user.is_active,
    }


@router.post("/auth/login")
def login(body: LoginBody, request: Request, db: Session = Depends(deps.get_db)) -> dict:
    """Log in with a password; sets the session cookie and returns the CSRF token. Repeated
    failures for an account or from an address are answered 429 for a while (Retry-After)."""
    throttle.check_login(request, body.username)
    user = auth.authenticate(db, body.username, body.password)
    if user is None:
        throttle.login_failed(request, body.username)
        raise HTTPException(401, "wrong user name or password")
    throttle.login_succeeded(request, body.username)
    auth.login_session(request, user)
    return {"user": user_json(user), "csrf_token": auth.csrf_token(request)}


@router.post("/auth/logout")
def logout(request: Request, _user: User = Depends(deps.current_user)) -> dict:
    auth.logout_session(request)
    return {"ok": True}


@router.get("/auth/me")
def me(request: Request, user: User = Depends(deps.current_user)) -> dict:
    return {"user": user_json(user), "csrf_token": auth.csrf_token(request)}


@router.post("/auth/password")
def change_password(
    body: PasswordChange,
    request: Request,
    user: User = Depends(deps.current_user),
    db: Session = Depends(deps.get_db),
) -> dict:
    """Change one's own password. Every session of the account ends; the caller's browser
    session goes on with a new cookie (and a new CSRF token, in this answer)."""
    throttle.check_login(request, user.username)
    if not auth.verify_password(body.current_password, user.password_hash):
        throttle.login_failed(request, user.username)
        raise HTTPException(403, "current_password is wrong")
    _set_password(db, user, body.new_password)
    if request.session.get("user_id") == user.id:
        auth.login_session(request, user)
        return {"user": user_json(user), "csrf_token": auth.csrf_token(request)}
    return {"user": user_json(user), "csrf_token": None}


def _set_password(db: Session, user: User, password: str) -> None:
    try:
        auth.set_password(db, user, password)
    except auth.AuthError as error:
        raise HTTPException(422, str(error)) from None
    db.commit()


@router.post("/auth/tokens", status_code=201)
def create_token(
    body: TokenBody, user: User = Depends(deps.current_user), db: Session = Depends(deps.get_db)
) -> dict:
    """A new API token for the caller; the token is in this answer only."""
    row, token = auth.create_api_token(db, user, body.name)
    db.commit()
    return {"id": row.id, "name": row.name, "token": token}


@router.get("/auth/tokens")
def list_tokens(
    user: User = Depends(deps.current_user),
    db: Session = Depends(deps.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
    return paginate(
        db,
        query,
        page,
        lambda t: {"id": t.id, "name": t.name, "created_at": t.created_at.isoformat()},
    )


@router.delete("/auth/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: Id, user: User = Depends(deps.current_user), db: Session = Depends(deps.get_db)
) -> None:
    row = get_or_404(db, ApiToken, token_id, "token")
    if row.user_id != user.id:
        raise HTTPException(404, f"token {token_id} not found")
    db.delete(row)
    db.commit()


@router.get("/users")
def list_users(
    _admin: User = Depends(deps.require_admin),
    db: Session = Depends(deps.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    return paginate(db, select(User).order_by(User.id), page, user_json)


@router.post("/users", status_code=201)
def create_user(
    body: UserBody, _admin: User = Depends(deps.require_admin), db: Session = Depends(deps.get_db)
) -> dict:
    try:
        user = auth.create_user(db, body.username, body.password, body.role)
    except auth.AuthError as error:
        raise HTTPException(409 if "exists" in str(error) else 422, str(error)) from None
    db.commit()
    return user_json(user)


@router.post("/users/{user_id}/password")
def set_user_password(
    user_id: Id, body: PasswordSet, _admin: User = Depends(deps.require_admin),
    db: Session = Depends(deps.get_db),
) -> dict:  # fmt: skip
    """Set a user's password (e.g. a forgotten one); their sessions end."""
    user = get_or_404(db, User, user_id, "user")
    _set_password(db, user, body.password)
    return user_json(user)


@router.post("/users/{user_id}/deactivate")
def deactivate_user(
    user_id: Id, admin: User = Depends(deps.require_admin), db: Session = Depends(deps.get_db)
) -> dict:
    """Lock an account: its sessions end at once and its API tokens stop working."""
    user = get_or_404(db, User, user_id, "user")
    if user.id == admin.id:
        raise HTTPException(409, "you cannot deactivate your own account: ask another admin")
    auth.set_active(db, user, False)
    db.commit()
    return user_json(user)


@router.post("/users/{user_id}/activate")
def activate_user(
    user_id: Id, _admin: User = Depends(deps.require_admin), db: Session = Depends(deps.get_db)
) -> dict:
    user = get_or_404(db, User, user_id, "user")
    auth.set_active(db, user, True)
    db.commit()
    return user_json(user)


@router.delete("/users/{user_id}/tokens")
def revoke_user_tokens(
    user_id: Id, _admin: User = Depends(deps.require_admin), db: Session = Depends(deps.get_db)
) -> dict:
    """Delete every API token of a user; returns how many there were."""
    user = get_or_404(db, User, user_id, "user")
    revoked = auth.revoke_tokens(db, user)
    db.commit()
    return {"user": user_json(user), "revoked": revoked}
