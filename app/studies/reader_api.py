"""``/api/v1/reader``: what an invited reader's browser (or program) may call.

A reader is identified by their invitation token, either as ``Authorization: Bearer rd_…`` or
through the session cookie set when the invitation link was opened (``/r/<token>``; then unsafe
calls need the ``X-CSRF-Token`` header). Everything here is scoped to that one reader: their
own readings by opaque per-reader tokens, their own answers, the blinded images. No route
answers with an arm, a truth, another reader's answers or results.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from app.db.study_tables import StudyCase
from app.deps import ReaderDep, SessionDep
from app.errors import error_responses, json_error_responses
from app.studies import reading as reading_service
from app.studies.schemas import (
    AnswerBody,
    AnswerResultOut,
    CaseViewOut,
    ProfileBody,
    ReaderOverviewOut,
    ReaderSelfOut,
)

router = APIRouter(prefix="/reader", tags=["reader"])
IMAGE_MEDIA_TYPE = "application/octet-stream"  # NIfTI-1 has no registered media type
IMAGE_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "X-Content-Type-Options": "nosniff",
}
# A reader's token: 401 when it is missing, wrong or withdrawn; 429 after too many wrong ones
# from one address. Unsafe methods by session also need the CSRF header (403).
READ_ERRORS = (401, 429)
WRITE_ERRORS = (400, 401, 403, 422, 429)  # 400: a JSON body that cannot be parsed
CaseToken = Annotated[
    str, Path(max_length=64, description="The reader's opaque token of one reading.")
]


def _errors(
    base: tuple[int, ...], *statuses: int, json_only: bool = False
) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route; ``json_only`` for a route whose own answer is not JSON."""
    describe = json_error_responses if json_only else error_responses
    return describe(*sorted({*base, *statuses}))


@router.get("", response_model=ReaderOverviewOut, responses=_errors(READ_ERRORS))
def reader_overview(reader: ReaderDep, db: SessionDep) -> ReaderOverviewOut:
    """The study's instructions and settings, the reader's profile and progress, their order."""
    return ReaderOverviewOut.model_validate(reading_service.overview(db, reader))


@router.put("/profile", response_model=ReaderSelfOut, responses=_errors(WRITE_ERRORS))
def save_profile(body: ProfileBody, reader: ReaderDep, db: SessionDep) -> ReaderSelfOut:
    """A short profile: years of experience and specialty."""
    reading_service.save_profile(db, reader, body.experience_years, body.specialty)
    db.commit()
    return ReaderSelfOut.model_validate(reading_service.overview(db, reader)["reader"])


@router.get(
    "/cases/{token}",
    response_model=CaseViewOut,
    response_model_exclude_unset=True,  # a test case's JSON has no `truth` key at all
    responses=_errors(READ_ERRORS, 404, 422),
)
def get_case(token: CaseToken, reader: ReaderDep, db: SessionDep) -> CaseViewOut:
    """One case of the reader's order: position, image URL, neighbours, own answer."""
    reading = reading_service.reading_for_token(db, reader, token)
    view = reading_service.case_view(db, reader, reading)
    db.commit()
    return CaseViewOut.model_validate(view)


class NiftiResponse(Response):
    media_type = IMAGE_MEDIA_TYPE


IMAGE_RESPONSES = {
    200: {
        "description": "Uncompressed NIfTI-1 (application/octet-stream); gzip-compressed for "
        "studies encoded before uncompressed copies (application/gzip).",
        "content": {
            IMAGE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **_errors(READ_ERRORS, 404, 422, json_only=True),
}


def _served(request: Request, case: StudyCase) -> Response:
    """The blinded file as it is: no ETag or Last-Modified (they would date the case)."""
    data = request.app.state.storage.absolute(case.served_path).read_bytes()
    gzipped = case.served_path.endswith(".gz")  # studies encoded before uncompressed copies
    media_type = "application/gzip" if gzipped else IMAGE_MEDIA_TYPE
    return Response(data, media_type=media_type, headers=IMAGE_HEADERS)


@router.get("/cases/{token}/image.nii", response_class=NiftiResponse, responses=IMAGE_RESPONSES)
def get_case_image(
    token: CaseToken, request: Request, reader: ReaderDep, db: SessionDep
) -> Response:
    """The blinded image of one case: uncompressed NIfTI-1, one size and header per study."""
    reading = reading_service.reading_for_token(db, reader, token)
    return _served(request, reading.case)


@router.get("/examples/{token}/image.nii", response_class=NiftiResponse, responses=IMAGE_RESPONSES)
def get_example_image(
    token: CaseToken, request: Request, reader: ReaderDep, db: SessionDep
) -> Response:
    """The blinded image of an example case (shown with its caption before the test)."""
    case = reading_service.example_for_token(db, reader, token)
    return _served(request, case)


@router.put(
    "/cases/{token}/answer",
    response_model=AnswerResultOut,
    responses={
        201: {"model": AnswerResultOut, "description": "The first answer to the case."},
        **_errors(WRITE_ERRORS, 404, 409),
    },
)
def put_answer(
    token: CaseToken, body: AnswerBody, response: Response, reader: ReaderDep, db: SessionDep
) -> AnswerResultOut:
    """Answer a case: 201 for the first answer; the same answer again is harmless (200,
    nothing changes); a different one 409 unless the study allows changes (or while it is
    closed). An answer the study does not ask for (``unsure``, a confidence, a click, a
    comment or features) is refused with 422.

    ``truth`` is the answer key of a practice case (shown to the reader after answering) and
    null for every test case.
    """
    reading = reading_service.reading_for_token(db, reader, token)
    row, created = reading_service.submit_answer(db, reader, reading, body.model_dump())
    response.status_code = 201 if created else 200
    progress = reading_service.progress(db, reader)
    return AnswerResultOut.model_validate({
        "answer": reading_service.answer_json(row),
        "progress": progress,
        "truth": reading_service.practice_truth(reading, answered=True),
    })  # fmt: skip
