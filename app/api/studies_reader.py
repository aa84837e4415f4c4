"""``/api/v1/reader``: what an invited reader's browser (or program) may call.

A reader is identified by their invitation token, either as ``Authorization: Bearer rd_…`` or
through the session cookie set when the invitation link was opened (``/r/<token>``; then unsafe
calls need the ``X-CSRF-Token`` header). Everything here is scoped to that one reader: their
own readings by opaque per-reader tokens, their own answers, the blinded images. No route
answers with an arm, a truth, another reader's answers or results.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from app import auth, throttle
from app.api.common import DbInt
from app.models_studies import StudyCase, StudyReader
from app.services import studies_reading as reading_service
from app.services.studies import FEATURES, READER_TOKEN_PREFIX, StudyError, token_digest

router = APIRouter(prefix="/reader", tags=["reader"])
MAX_COMMENT = 2000
SESSION_READER = "reader_id"
SESSION_READER_KEY = "reader_key"
IMAGE_MEDIA_TYPE = "application/octet-stream"  # NIfTI-1 has no registered media type
IMAGE_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "X-Content-Type-Options": "nosniff",
}


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


def current_reader(request: Request, db: Session = Depends(auth.get_db)) -> StudyReader:
    """The calling reader, by bearer reader token or by session (CSRF on unsafe methods)."""
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
            raise HTTPException(401, "invalid or withdrawn reader token")
        return reader
    reader = session_reader(request, db)
    if reader is None:
        raise HTTPException(
            401,
            "open your invitation link first (or send 'Authorization: Bearer <reader token>')",
        )
    if request.method not in auth.SAFE_METHODS:
        auth.check_csrf(request, request.headers.get(auth.CSRF_HEADER))
    return reader


SessionDep = Annotated[Session, Depends(auth.get_db)]
ReaderDep = Annotated[StudyReader, Depends(current_reader)]


class ProfileBody(BaseModel):
    experience_years: int = Field(ge=0, le=70, description="Years reading CT.")
    specialty: str = Field(min_length=1, max_length=100, description="e.g. abdominal radiology.")


class AnswerBody(BaseModel):
    answer: str = Field(description="real, synthetic or unsure (when the study allows it).")
    confidence: int | None = Field(None, ge=1, le=5, description="1 (a guess) to 5 (certain).")
    click: list[DbInt] | None = Field(
        None, min_length=3, max_length=3, description="Voxel [i, j, k] that looks synthetic."
    )
    comment: str | None = Field(
        None, max_length=MAX_COMMENT, description="Free text (when the study asks for it)."
    )
    features: list[str] | None = Field(
        None,
        max_length=len(FEATURES),
        description="What gave the case away (when the study asks): " + ", ".join(FEATURES) + ".",
    )
    time_ms: int = Field(0, ge=0, le=24 * 3600 * 1000, description="Time spent on the case.")

    @field_validator("features")
    @classmethod
    def _known_features(cls, features: list[str] | None) -> list[str] | None:
        if features is None:
            return None
        unknown = [name for name in features if name not in FEATURES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a feature; choose from {', '.join(FEATURES)}")
        return [name for name in FEATURES if name in features]  # one order, no repeats

    @field_validator("comment")
    @classmethod
    def _blank_is_none(cls, comment: str | None) -> str | None:
        return comment.strip() or None if comment is not None else None


def _raise(error: StudyError):
    raise HTTPException(error.status, str(error)) from None


@router.get("")
def reader_overview(reader: ReaderDep, db: SessionDep) -> dict:
    """The study's instructions and settings, the reader's profile and progress, their order."""
    return reading_service.overview(db, reader)


@router.put("/profile")
def save_profile(body: ProfileBody, reader: ReaderDep, db: SessionDep) -> dict:
    """A short profile: years of experience and specialty."""
    reading_service.save_profile(db, reader, body.experience_years, body.specialty)
    db.commit()
    return reading_service.overview(db, reader)["reader"]


@router.get("/cases/{token}")
def get_case(token: str, reader: ReaderDep, db: SessionDep) -> dict:
    """One case of the reader's order: position, image URL, neighbours, own answer."""
    try:
        reading = reading_service.reading_for_token(db, reader, token)
        view = reading_service.case_view(db, reader, reading)
    except StudyError as error:
        _raise(error)
    db.commit()
    return view


def _served(request: Request, case: StudyCase) -> Response:
    """The blinded file as it is: no ETag or Last-Modified (they would date the case)."""
    data = request.app.state.storage.absolute(case.served_path).read_bytes()
    gzipped = case.served_path.endswith(".gz")  # studies encoded before uncompressed copies
    media_type = "application/gzip" if gzipped else IMAGE_MEDIA_TYPE
    return Response(data, media_type=media_type, headers=IMAGE_HEADERS)


@router.get("/cases/{token}/image.nii")
def get_case_image(token: str, request: Request, reader: ReaderDep, db: SessionDep) -> Response:
    """The blinded image of one case: uncompressed NIfTI-1, one size and header per study."""
    try:
        reading = reading_service.reading_for_token(db, reader, token)
    except StudyError as error:
        _raise(error)
    return _served(request, reading.case)


@router.get("/examples/{token}/image.nii")
def get_example_image(token: str, request: Request, reader: ReaderDep, db: SessionDep) -> Response:
    """The blinded image of an example case (shown with its caption before the test)."""
    try:
        case = reading_service.example_for_token(db, reader, token)
    except StudyError as error:
        _raise(error)
    return _served(request, case)


@router.put("/cases/{token}/answer")
def put_answer(
    token: str, body: AnswerBody, response: Response, reader: ReaderDep, db: SessionDep
) -> dict:
    """Answer a case. Sending the same answer again is harmless (200, nothing changes).

    ``truth`` is the answer key of a practice case (shown to the reader after answering) and
    null for every test case.
    """
    try:
        reading = reading_service.reading_for_token(db, reader, token)
        row, created = reading_service.submit_answer(db, reader, reading, body.model_dump())
    except StudyError as error:
        _raise(error)
    response.status_code = 201 if created else 200
    progress = reading_service.progress(db, reader)
    return {
        "answer": reading_service.answer_json(row),
        "progress": progress,
        "truth": reading_service.practice_truth(reading, answered=True),
    }


def token_reader(db: Session, token: str) -> StudyReader | None:
    """The reader of an invitation token (for the invitation page)."""
    if not token.startswith(READER_TOKEN_PREFIX):
        return None
    return reading_service.reader_for_token(db, token)


__all__ = ["current_reader", "remember_reader", "router", "session_reader", "token_digest"]
