"""The reader's pages: invitation link, start page (instructions, profile, examples), viewer.

``/r/<token>`` checks the invitation, puts the reader in the session and redirects to
``/read``, so no later URL carries the token (and the redirect sends no Referer). The viewer
``/read/c/<case token>`` is the same HTML for every case: the page learns which case from its
own URL and loads the case through ``/api/v1/reader``.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from app.accounts import auth, throttle
from app.db import Id
from app.db.study_tables import StudyReader
from app.db.tables import Role
from app.errors import Forbidden, NotFound
from app.studies import reading as reading_service
from app.studies.reader_auth import remember_reader, session_reader, token_reader
from app.web import page_user, render

router = APIRouter(include_in_schema=False)
NO_REFERRER = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _private(response):
    response.headers.update(NO_REFERRER)
    return response


def _reader_or_403(request: Request, db) -> StudyReader:
    reader = session_reader(request, db)
    if reader is None:
        raise Forbidden(
            "This page is for invited readers: open the invitation link you were sent. If it "
            "stopped working, ask the study's organiser for a new one.",
        )
    return reader


@router.get("/r/{token}")
def open_invitation(request: Request, token: str):
    throttle.check_token(request)  # 429 after too many wrong links from this address
    with request.app.state.session_factory() as db:
        reader = token_reader(db, token)
        if reader is None:
            throttle.token_failed(request, "reader")
            return render(request, "error.html", status_code=404, status=404,
                          detail="This invitation link is not valid (mistyped, or withdrawn by "
                          "the study's organiser).")  # fmt: skip
        user = page_user(request)
        if user is not None and user.role == Role.READER and reader.user_id is None:
            reader.user_id = user.id  # a reader with an account finds it again on /studies
            db.commit()
        remember_reader(request, reader)
    return RedirectResponse("/read", status_code=303, headers=NO_REFERRER)


@router.post("/read/open/{reader_id}")
def open_assignment(request: Request, reader_id: Id, csrf_token: str = Form("")):
    """A reader with an account opens one of their assignments (listed on /studies)."""
    auth.check_csrf(request, csrf_token)
    user = page_user(request)
    with request.app.state.session_factory() as db:
        reader = db.get(StudyReader, reader_id)
        if user is None or reader is None or reader.user_id != user.id or reader.revoked:
            raise NotFound("no such reading assignment")
        remember_reader(request, reader)
    return RedirectResponse("/read", status_code=303)


@router.get("/read")
def reader_start(request: Request):
    with request.app.state.session_factory() as db:
        reader = _reader_or_403(request, db)
        info = reading_service.overview(db, reader)
    return _private(render(request, "studies/reader_start.html", info=info))


@router.post("/read/profile")
def reader_profile(
    request: Request,
    experience_years: int = Form(ge=0, le=70),
    specialty: str = Form(min_length=1, max_length=100),
    csrf_token: str = Form(""),
):
    auth.check_csrf(request, csrf_token)
    with request.app.state.session_factory() as db:
        reader = _reader_or_403(request, db)
        reading_service.save_profile(db, reader, experience_years, specialty)
        db.commit()
    return RedirectResponse("/read#examples", status_code=303)


@router.get("/read/c/{token}")
def reader_case(request: Request, token: str):
    with request.app.state.session_factory() as db:
        reader = _reader_or_403(request, db)
        reading_service.reading_for_token(db, reader, token)  # 404 "case not found"
        if reader.profile_at is None:
            return RedirectResponse("/read", status_code=303)
        info = reading_service.overview(db, reader)
    return _private(render(request, "studies/reader_case.html", study=info["study"]))


@router.get("/read/done")
def reader_done(request: Request):
    with request.app.state.session_factory() as db:
        reader = _reader_or_403(request, db)
        info = reading_service.overview(db, reader)
    return _private(render(request, "studies/reader_done.html", info=info))
