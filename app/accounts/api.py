"""``/api/v1/auth`` and ``/api/v1/users``: log in and out, who am I, one's password, API tokens;
for admins the users: create, set a password, deactivate and activate, revoke their tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from app.accounts import auth, throttle
from app.accounts.schemas import (
    LoginBody,
    NewTokenOut,
    OkOut,
    PasswordChange,
    PasswordSet,
    RevokedOut,
    SessionOut,
    TokenBody,
    TokenOut,
    UserBody,
    UserOut,
    token_out,
    user_out,
)
from app.common import Id, Page, PageDep, get_or_404, paginate
from app.db.tables import ApiToken, User
from app.deps import AdminDep, CurrentUser, SessionDep
from app.errors import (
    CALLER_STATUSES,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    error_responses,
)

router = APIRouter(tags=["accounts"])


@router.post(
    "/auth/login", response_model=SessionOut, responses=error_responses(400, 401, 422, 429)
)
def login(body: LoginBody, request: Request, db: SessionDep) -> SessionOut:
    """Log in with a password; sets the session cookie and returns the CSRF token. Repeated
    failures for an account or from an address are answered 429 for a while (Retry-After)."""
    throttle.check_login(request, body.username)
    user = auth.authenticate(db, body.username, body.password)
    if user is None:
        throttle.login_failed(request, body.username)
        raise Unauthorized("wrong user name or password", code="wrong_credentials")
    throttle.login_succeeded(request, body.username)
    auth.login_session(request, user)
    return SessionOut(user=user_out(user), csrf_token=auth.csrf_token(request))


@router.post("/auth/logout", response_model=OkOut, responses=error_responses(*CALLER_STATUSES))
def logout(request: Request, _user: CurrentUser) -> OkOut:
    auth.logout_session(request)
    return OkOut(ok=True)


@router.get("/auth/me", response_model=SessionOut, responses=error_responses(*CALLER_STATUSES))
def me(request: Request, user: CurrentUser) -> SessionOut:
    return SessionOut(user=user_out(user), csrf_token=auth.csrf_token(request))


@router.post(
    "/auth/password",
    response_model=SessionOut,
    responses=error_responses(400, *CALLER_STATUSES, 422),
)
def change_password(
    body: PasswordChange, request: Request, user: CurrentUser, db: SessionDep
) -> SessionOut:
    """Change one's own password. Every session of the account ends; the caller's browser
    session goes on with a new cookie (and a new CSRF token, in this answer). 403 when
    ``current_password`` is wrong (429 after repeated wrong ones)."""
    throttle.check_login(request, user.username)
    if not auth.verify_password(body.current_password, user.password_hash):
        throttle.login_failed(request, user.username)
        raise Forbidden("current_password is wrong", code="wrong_password")
    _set_password(db, user, body.new_password)
    if request.session.get("user_id") == user.id:
        auth.login_session(request, user)
        return SessionOut(user=user_out(user), csrf_token=auth.csrf_token(request))
    return SessionOut(user=user_out(user), csrf_token=None)


def _set_password(db, user: User, password: str) -> None:
    try:
        auth.set_password(db, user, password)
    except auth.AuthError as error:
        raise Invalid(str(error), code="weak_password") from None
    db.commit()


@router.post(
    "/auth/tokens",
    status_code=201,
    response_model=NewTokenOut,
    responses=error_responses(400, *CALLER_STATUSES, 422),
)
def create_token(body: TokenBody, user: CurrentUser, db: SessionDep) -> NewTokenOut:
    """A new API token for the caller; the token is in this answer only."""
    row, token = auth.create_api_token(db, user, body.name)
    db.commit()
    return NewTokenOut(id=row.id, name=row.name, token=token)


@router.get(
    "/auth/tokens", response_model=Page[TokenOut], responses=error_responses(*CALLER_STATUSES, 422)
)
def list_tokens(user: CurrentUser, db: SessionDep, page: PageDep) -> Page[TokenOut]:
    """The caller's API tokens (never the tokens themselves)."""
    query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
    return Page[TokenOut].model_validate(paginate(db, query, page, token_out))


@router.delete(
    "/auth/tokens/{token_id}",
    status_code=204,
    responses=error_responses(*CALLER_STATUSES, 404, 422),
)
def revoke_token(token_id: Id, user: CurrentUser, db: SessionDep) -> None:
    row = get_or_404(db, ApiToken, token_id, "token")
    if row.user_id != user.id:
        raise NotFound(f"token {token_id} not found")
    db.delete(row)
    db.commit()


@router.get(
    "/users", response_model=Page[UserOut], responses=error_responses(*CALLER_STATUSES, 422)
)
def list_users(_admin: AdminDep, db: SessionDep, page: PageDep) -> Page[UserOut]:
    return Page[UserOut].model_validate(
        paginate(db, select(User).order_by(User.id), page, user_out)
    )


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    responses=error_responses(400, *CALLER_STATUSES, 409, 422),
)
def create_user(body: UserBody, _admin: AdminDep, db: SessionDep) -> UserOut:
    """Add an account. 409 when the name is taken; 422 naming the rule a name, password or
    role breaks."""
    try:
        user = auth.create_user(db, body.username, body.password, body.role)
    except auth.AuthError as error:
        if "exists" in str(error):
            raise Conflict(str(error), code="user_exists") from None
        raise Invalid(str(error)) from None
    db.commit()
    return user_out(user)


@router.post(
    "/users/{user_id}/password",
    response_model=UserOut,
    responses=error_responses(400, *CALLER_STATUSES, 404, 422),
)
def set_user_password(user_id: Id, body: PasswordSet, _admin: AdminDep, db: SessionDep) -> UserOut:
    """Set a user's password (e.g. a forgotten one); their sessions end."""
    user = get_or_404(db, User, user_id, "user")
    _set_password(db, user, body.password)
    return user_out(user)


@router.post(
    "/users/{user_id}/deactivate",
    response_model=UserOut,
    responses=error_responses(*CALLER_STATUSES, 404, 409, 422),
)
def deactivate_user(user_id: Id, admin: AdminDep, db: SessionDep) -> UserOut:
    """Lock an account: its sessions end at once and its API tokens stop working. 409 for
    one's own account."""
    user = get_or_404(db, User, user_id, "user")
    if user.id == admin.id:
        raise Conflict("you cannot deactivate your own account: ask another admin")
    auth.set_active(db, user, False)
    db.commit()
    return user_out(user)


@router.post(
    "/users/{user_id}/activate",
    response_model=UserOut,
    responses=error_responses(*CALLER_STATUSES, 404, 422),
)
def activate_user(user_id: Id, _admin: AdminDep, db: SessionDep) -> UserOut:
    user = get_or_404(db, User, user_id, "user")
    auth.set_active(db, user, True)
    db.commit()
    return user_out(user)


@router.delete(
    "/users/{user_id}/tokens",
    response_model=RevokedOut,
    responses=error_responses(*CALLER_STATUSES, 404, 422),
)
def revoke_user_tokens(user_id: Id, _admin: AdminDep, db: SessionDep) -> RevokedOut:
    """Delete every API token of a user; returns how many there were."""
    user = get_or_404(db, User, user_id, "user")
    revoked = auth.revoke_tokens(db, user)
    db.commit()
    return RevokedOut(user=user_out(user), revoked=revoked)
