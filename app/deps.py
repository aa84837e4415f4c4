"""The request dependencies, in one place: the database session, the caller and their role.

Routes declare what they need with the ``Annotated`` aliases below (``user: ResearcherDep``);
the page routes use the same functions through :mod:`app.web`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.accounts import auth, throttle
from app.db.study_tables import StudyReader
from app.db.tables import Role, User
from app.errors import Forbidden, Unauthorized


def get_db(request: Request):
    """A database session per request (committed by the route, rolled back on error)."""
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


def optional_user(request: Request, db: Session = Depends(get_db)) -> User | None:
    """The caller: by bearer token, else by session cookie (then CSRF on unsafe methods)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        guess = token.startswith(auth.TOKEN_PREFIX)  # others (a reader's token) are no API tokens
        if guess:
            throttle.check_token(request)
        user = auth.user_for_token(db, token) if guess else None
        if user is None:
            if guess:
                throttle.token_failed(request, "API")
            raise Unauthorized("invalid or revoked API token")
        db.commit()
        return user
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = db.get(User, user_id)
    if user is None or not user.is_active:
        request.session.clear()
        return None
    if request.method not in auth.SAFE_METHODS:
        auth.check_csrf(request, request.headers.get(auth.CSRF_HEADER))
    return user


def current_user(user: User | None = Depends(optional_user)) -> User:
    if user is None:
        raise Unauthorized("log in first (session cookie or 'Authorization: Bearer <token>')")
    return user


def require_roles(*roles: str):
    """A dependency that lets only users of ``roles`` through (403 otherwise)."""

    def dependency(user: User = Depends(current_user)) -> User:
        if user.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
        return user

    return dependency


require_admin = require_roles(Role.ADMIN)
require_researcher = require_roles(Role.ADMIN, Role.RESEARCHER)


def current_reader(request: Request, db: Session = Depends(get_db)) -> StudyReader:
    """The calling reader of a study (invitation token or session); see
    :mod:`app.studies.reader_auth`."""
    from app.studies.reader_auth import current_reader as find_reader

    return find_reader(request, db)


SessionDep = Annotated[Session, Depends(get_db)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(current_user)]
ResearcherDep = Annotated[User, Depends(require_researcher)]
AdminDep = Annotated[User, Depends(require_admin)]
ReaderDep = Annotated[StudyReader, Depends(current_reader)]
