"""Who the reader is: an invitation token (``Authorization: Bearer rd_…``) or the session set
when the invitation link was opened (then unsafe calls need the CSRF header)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from app.accounts import auth, throttle
from app.db.study_tables import StudyReader
from app.errors import Unauthorized
from app.studies import reading as reading_service
from app.studies.service import READER_TOKEN_PREFIX

SESSION_READER = "reader_id"
SESSION_READER_KEY = "reader_key"


def remember_reader(request: Request, reader: StudyReader) -> None:
    """Put the reader in the session (after the invitation link): later URLs carry no token."""
    request.session[SESSION_READER] = reader.id
    request.session[SESSION_READER_KEY] = reader.token_hash[:16]
    auth.csrf_token(request)


def session_reader(request: Request, db: Session) -> StudyReader | None:
    """The reader of the session, if the invitation they opened is still valid."""
    reader_id = request.session.get(SESSION_READER)
    if reader_id is None:
        return None
    reader = db.get(StudyReader, reader_id)
    key = request.session.get(SESSION_READER_KEY)
    if reader is None or reader.revoked or reader.token_hash[:16] != key:
        request.session.pop(SESSION_READER, None)
        request.session.pop(SESSION_READER_KEY, None)
        return None
    return reader


def current_reader(request: Request, db: Session) -> StudyReader:
    """The calling reader, by bearer reader token or by session (CSRF on unsafe methods).

    Raises:
        Unauthorized: no reader token or session, or a wrong or withdrawn token (401); the
            throttle answers 429 after too many wrong tokens from one address.
    """
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        reader = None
        if token.startswith(READER_TOKEN_PREFIX):
            throttle.check_token(request)
            reader = reading_service.reader_for_token(db, token)
            if reader is None:
                throttle.token_failed(request, "reader")
        if reader is None:
            raise Unauthorized("invalid or withdrawn reader token")
        return reader
    reader = session_reader(request, db)
    if reader is None:
        raise Unauthorized(
            "open your invitation link first (or send 'Authorization: Bearer <reader token>')"
        )
    if request.method not in auth.SAFE_METHODS:
        auth.check_csrf(request, request.headers.get(auth.CSRF_HEADER))
    return reader


def token_reader(db: Session, token: str) -> StudyReader | None:
    """The reader of an invitation token (for the invitation page)."""
    if not token.startswith(READER_TOKEN_PREFIX):
        return None
    return reading_service.reader_for_token(db, token)
