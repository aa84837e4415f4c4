"""Browser sessions kept on the server, and the security headers of every response.

:class:`ServerSessionMiddleware` replaces Starlette's signed-cookie sessions: the cookie holds
only a random token (``secrets.token_urlsafe(32)``); what the session holds (user id, CSRF
token, invited reader) lives in the ``web_sessions`` table under the token's SHA-256, so the
browser cannot read it, and the server can end it (logout, password change, deactivation: see
:func:`end_sessions`). ``request.session`` stays a dict, as with Starlette's middleware.

:class:`SecurityHeadersMiddleware` adds the headers every answer needs (nosniff, frame
protection, referrer policy) and the Content-Security-Policy of the HTML pages.

The cookie is ``Secure`` when the request came over HTTPS (``X-Forwarded-Proto`` counts only
from the proxies in ``SYNTUMOR_TRUSTED_PROXIES``; see :func:`app.main.create_app`) or when
``SYNTUMOR_SECURE_COOKIES`` says so.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import anyio
from sqlalchemy import delete, update
from sqlalchemy.orm import Session
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db.tables import WebSession

COOKIE_NAME = "syntumor_session"
SESSION_MAX_AGE_S = 14 * 24 * 3600
VISITOR_MAX_AGE_S = 24 * 3600  # a session holding only a CSRF token (a login form shown)
PURGE_EVERY = 500  # new sessions between two purges of expired ones
SESSIONLESS_PREFIXES = ("/static/", "/vendor/", "/healthz", "/favicon.ico")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",  # NiiVue decodes some formats in WebAssembly
        "style-src 'self' 'unsafe-inline'",  # NiiVue and the pages set element styles
        "img-src 'self' data: blob:",
        "connect-src 'self' blob: data:",  # the reader page prefetches images into blob: URLs
        "worker-src 'self' blob:",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def end_sessions(db: Session, user_id: int) -> int:
    """Delete every session of a user (they must log in again); returns how many there were."""
    result = db.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return result.rowcount or 0


def purge_expired(db: Session) -> None:
    db.execute(delete(WebSession).where(WebSession.expires_at < datetime.now(UTC)))


class ServerSession(dict):
    """The session of one request: a dict, plus :meth:`regenerate` (a new token, e.g. at
    login, so that a token planted before cannot be used after: no session fixation)."""

    def __init__(self, data: dict[str, Any], key: str | None) -> None:
        super().__init__(data)
        self.key = key
        self.loaded = dict(data)
        self.renew = False

    def regenerate(self) -> None:
        self.renew = True


def regenerate(session: dict) -> None:
    """Ask for a new session token (a no-op for sessions that are not :class:`ServerSession`)."""
    if isinstance(session, ServerSession):
        session.regenerate()


def _load(factory, token: str) -> tuple[dict[str, Any], str] | None:
    key = token_digest(token)
    with factory() as db:
        row = db.get(WebSession, key)
        if row is None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires < datetime.now(UTC):
            db.delete(row)
            db.commit()
            return None
        return dict(row.data or {}), key


def _save(factory, session: ServerSession) -> str | None:
    """Write the session; returns a new token when one was made."""
    data = dict(session)
    with factory() as db:
        if session.key is not None and (session.renew or not data):
            db.execute(delete(WebSession).where(WebSession.id == session.key))
        if not data:
            db.commit()
            return None
        if session.key is not None and not session.renew:
            # An UPDATE only: a session ended meanwhile (logout elsewhere) stays ended.
            db.execute(update(WebSession).where(WebSession.id == session.key)
                       .values(data=data, user_id=data.get("user_id")))  # fmt: skip
            db.commit()
            return None
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        db.add(WebSession(id=token_digest(token), user_id=data.get("user_id"), data=data,
                          created_at=now, expires_at=now + timedelta(seconds=max_age(data))))  # fmt: skip
        if next(_created) % PURGE_EVERY == 0:
            purge_expired(db)
        db.commit()
        return token


_created = itertools.count(1)


def max_age(data: dict[str, Any]) -> int:
    """How long a session lives: a visitor's (CSRF token only) a day, others 14 days."""
    return SESSION_MAX_AGE_S if set(data) - {"csrf"} else VISITOR_MAX_AGE_S


def _cookie(value: str, *, max_age: int, secure: bool) -> str:
    cookie = f"{COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    return cookie + ("; Secure" if secure else "")


def _cookie_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no session
                return None
            if COOKIE_NAME in jar:
                return jar[COOKIE_NAME].value[:100]
    return None


class ServerSessionMiddleware:
    """``scope["session"]`` from the ``web_sessions`` table (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, secure_cookies: bool = False) -> None:
        self.app = app
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SESSIONLESS_PREFIXES):
            await self.app(scope, receive, send)
            return
        factory = scope["app"].state.session_factory
        token = _cookie_token(scope)
        loaded = await anyio.to_thread.run_sync(_load, factory, token) if token else None
        session = ServerSession(*(loaded or ({}, None)))
        scope["session"] = session
        secure = self.secure_cookies or scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = await self._cookie_after(factory, session, token, secure)
                if cookie:
                    MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    async def _cookie_after(factory, session: ServerSession, token, secure: bool) -> str | None:
        if not session.renew and dict(session) == session.loaded:
            if token and session.key is None:  # a stale cookie: forget it
                return _cookie("", max_age=0, secure=secure)
            return None
        if session.key is not None and max_age(session.loaded) < max_age(dict(session)):
            session.renew = True  # a visitor became someone: a new token, the longer life
        new_token = await anyio.to_thread.run_sync(_save, factory, session)
        if new_token:
            return _cookie(new_token, max_age=max_age(dict(session)), secure=secure)
        if not dict(session) and token:
            return _cookie("", max_age=0, secure=secure)
        return None


class SecurityHeadersMiddleware:
    """Headers for every answer; the CSP for HTML (a header a route set itself is kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                if scope.get("scheme") == "https":
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)
