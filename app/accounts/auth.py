"""Accounts: hashed passwords, server-side sessions with CSRF tokens, API tokens, role checks.

- Browsers log in with a form; the session (kept on the server, :mod:`app.accounts.sessions`; the
  cookie holds a random token only) holds the user id and a CSRF token. Forms carry the token
  in a ``csrf_token`` field and JavaScript sends it in the ``X-CSRF-Token`` header; every
  state-changing request made with the cookie must carry it.
- Programs send ``Authorization: Bearer <token>``; only the token's SHA-256 is stored.
- Passwords are hashed with Argon2 (pwdlib). There is no default password anywhere. A new
  password needs 10 characters and must not be easy to guess (zxcvbn score 3 of 4: common
  passwords, keyboard walks, repeats, dates and the user's own name are refused).
- Logging out, a password change and a deactivation end the user's sessions on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from fastapi import Request
from pwdlib import PasswordHash
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from app.accounts.sessions import end_sessions, purge_expired, regenerate
from app.db.tables import ApiToken, Role, User
from app.errors import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MIN_PASSWORD_LENGTH = 10
ZXCVBN_MAX_LENGTH = 72
MIN_PASSWORD_SCORE = 3  # zxcvbn: 0 (top-100 password) .. 4; 3 resists ~10^10 guesses
TOKEN_PREFIX = "st_"
USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")

_hasher = PasswordHash.recommended()


class AuthError(ValueError):
    """A rule of accounts was broken (weak password, bad user name, unknown user)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password, password_hash)
    except Exception:  # a malformed stored hash never authenticates
        return False


def generate_password() -> str:
    """A one-time password for the demo: 16 URL-safe characters."""
    return secrets.token_urlsafe(12)


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not 3 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
        raise AuthError(
            f"user name must be 3-64 characters of a-z, 0-9, '.', '_', '-' or '@'; got {username!r}"
        )
    return name


def check_password(password: str, *, username: str = "") -> str:
    """Refuse short passwords and easy guesses (zxcvbn's scoring, with the user's name and the
    app's name as words an attacker tries first)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    # zxcvbn refuses (ValueError) more than 72 characters; a longer password is scored by its
    # first 72, which is plenty.
    verdict = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[username, "syntumor", "tumor"])
    if verdict["score"] < MIN_PASSWORD_SCORE:
        advice = " ".join(
            part for part in [verdict["feedback"]["warning"], *verdict["feedback"]["suggestions"]]
            if part
        )  # fmt: skip
        raise AuthError("password is too easy to guess" + (f": {advice}" if advice else ""))
    return password


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Add a user (name and password checked); raises AuthError when the name is taken."""
    name = check_username(username)
    if role not in tuple(Role):
        raise AuthError(f"role must be one of {', '.join(Role)}; got {role!r}")
    if session.scalar(select(User).where(User.username == name)) is not None:
        raise AuthError(f"user {name!r} already exists")
    user = User(
        username=name,
        password_hash=hash_password(check_password(password, username=name)),
        role=role,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, username: str) -> User:
    """The user called ``username``; raises AuthError naming it when there is none."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise AuthError(f"no user {username.strip().lower()!r}")
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Change a password (policy checked) and end every session of the user."""
    user.password_hash = hash_password(check_password(password, username=user.username))
    end_sessions(session, user.id)


def set_active(session: Session, user: User, active: bool) -> None:
    """(De)activate an account; a deactivated one's sessions end and its tokens stop working."""
    user.is_active = active
    if not active:
        end_sessions(session, user.id)


def revoke_tokens(session: Session, user: User) -> int:
    """Delete every API token of the user; returns how many there were."""
    return session.execute(delete(ApiToken).where(ApiToken.user_id == user.id)).rowcount or 0


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None or not user.is_active:
        hash_password("timing-equaliser")  # as slow as a real check: no user-name oracle
        return None
    return user if verify_password(password, user.password_hash) else None


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_api_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new API token for ``user``; returns the row and the token (shown only once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name[:100] or "token", token_hash=_token_digest(token))
    session.add(row)
    session.flush()
    return row, token


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(token)))
    if row is None or not row.user.is_active:
        return None
    row.last_used_at = datetime.now(UTC)
    return row.user


# --- sessions and CSRF -------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, supplied: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not supplied or not hmac.compare_digest(expected, supplied):
        raise Forbidden(
            "CSRF token missing or wrong: reload the page and submit the form again", code="csrf"
        )


def login_session(request: Request, user: User) -> None:
    """Sign ``user`` in: a new session (new token, new CSRF token: no fixation)."""
    with request.app.state.session_factory() as db:
        purge_expired(db)
        db.commit()
    request.session.clear()
    regenerate(request.session)
    request.session["user_id"] = user.id
    csrf_token(request)


def logout_session(request: Request) -> None:
    request.session.clear()


# --- dependencies ------------------------------------------------------------------------------
