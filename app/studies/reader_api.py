"""``/api/v1/reader``: what an invited reader's browser (or program) may call.

A reader is identified by their invitation token, either as ``Authorization: Bearer rd_…`` or
through the session cookie set when the invitation link was opened (``/r/<token>``; then unsafe
calls need the ``X-CSRF-Token`` header). Everything here is scoped to that one reader: their
own readings by opaque per-reader tokens, their own answers, the blinded images. No route
answers with an arm, a truth, another reader's answers or results.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from app.db.study_tables import StudyCase
from app.deps import ReaderDep, SessionDep
from app.studies import reading as reading_service
from app.studies.schemas import AnswerBody, ProfileBody
from app.studies.service import StudyError

router = APIRouter(prefix="/reader", tags=["reader"])
IMAGE_MEDIA_TYPE = "application/octet-stream"  # NIfTI-1 has no registered media type
IMAGE_HEADERS = {
    "Cache-Control": "private, max-age=3600",
    "X-Content-Type-Options": "nosniff",
}




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


