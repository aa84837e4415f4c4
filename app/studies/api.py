"""``/api/v1/studies``: reader studies for their owners (researchers and admins).

Create a study from stored volumes (two arms: stored volumes, or healthy volumes into which
the worker synthesizes tumors matched to the other arm's sizes), prepare it (a job), invite
readers (each gets a link with a token, shown once), and read the results, plots and exports.
A study is visible to its owner and to admins only; for anyone else it does not exist (404).
The reader's side is ``/api/v1/reader`` (:mod:`app.studies.reader_api`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import deps
from app.common import Id, PageParams, page_params, paginate
from app.db.study_tables import Study, StudyReader
from app.db.tables import Role, User
from app.jobs.schemas import job_json
from app.studies import checks as studies_checks
from app.studies import service, views
from app.studies.schemas import ReaderCreate, StudyCreate
from app.studies.service import StudyError
from app.volumes import service as volume_service

router = APIRouter(tags=["studies"])

SessionDep = Annotated[Session, Depends(deps.get_db)]
OwnerDep = Annotated[User, Depends(deps.require_researcher)]


def _raise(error: StudyError):
    raise HTTPException(error.status, str(error)) from None


def _study(db: Session, study_id: Id, user: User) -> Study:
    try:
        return service.visible_study(db, study_id, user)
    except StudyError as error:
        _raise(error)


def _reader(db: Session, study: Study, reader_id: Id) -> StudyReader:
    reader = db.get(StudyReader, reader_id)
    if reader is None or reader.study_id != study.id:
        raise HTTPException(404, f"reader {reader_id} not found in study {study.id}")
    return reader


@router.get("/studies")
def list_studies(user: OwnerDep, db: SessionDep, page: PageParams = Depends(page_params)) -> dict:
    """The caller's studies (every study for an admin)."""
    query = select(Study).order_by(Study.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Study.owner_id == user.id)
    return paginate(db, query, page, lambda study: service.study_json(db, study))


def _volumes_seen_by(db: Session, user: User, body: BaseModel) -> None:
    """404 for a volume of the spec that the user may not see (as for one that is not there)."""
    hidden = volume_service.first_hidden(db, user, body.model_dump())
    if hidden is not None:
        raise HTTPException(404, f"volume {hidden} not found")


@router.post("/studies/checks")
def check_design(body: StudyCreate, user: OwnerDep, db: SessionDep) -> dict:
    """The design checks of a study spec, before anything is created or prepared.

    Answers ``{"arms", "grid", "checks", "unacknowledged", "ok"}``: each check has a ``code``,
    a ``level`` (``info``; ``warning``: a confound to acknowledge by listing its code in
    ``acknowledge``; ``error``: the study cannot be blinded), a ``message`` and the ``cue``
    it leaves to readers. ``ok`` says whether ``POST /studies`` would accept the spec.
    """
    _volumes_seen_by(db, user, body)
    try:
        report = studies_checks.design_report(db, body.model_dump())
    except StudyError as error:
        _raise(error)
    return report


@router.post(
    "/studies",
    status_code=201,
    responses={409: {"description": "Design warnings not acknowledged (listed in `checks`)."}},
)
def create_study(body: StudyCreate, user: OwnerDep, db: SessionDep):
    """Create a study (a draft) and, unless ``prepare`` is false, queue its preparation.

    The design is checked first (``POST /studies/checks``): errors answer 422 and warnings not
    listed in ``acknowledge`` answer 409, both with the ``checks`` beside the ``detail``.
    """
    _volumes_seen_by(db, user, body)
    try:
        study = service.create_study(db, user, body.model_dump())
        job = service.queue_prepare(db, study, user.id) if body.prepare else None
    except StudyError as error:
        db.rollback()
        if getattr(error, "checks", None) is not None:
            return JSONResponse({"detail": str(error), "checks": error.checks}, error.status)
        _raise(error)
    db.commit()
    return {**service.study_json(db, study, detail=True), "job": job_json(job) if job else None}


@router.get("/studies/{study_id}")
def get_study(study_id: Id, user: OwnerDep, db: SessionDep) -> dict:
    """Everything about a study, truth included (owner and admins only)."""
    return service.study_json(db, _study(db, study_id, user), detail=True)


@router.delete("/studies/{study_id}", status_code=204)
def delete_study(study_id: Id, request: Request, user: OwnerDep, db: SessionDep) -> None:
    service.delete_study(db, request.app.state.storage, _study(db, study_id, user))


@router.post("/studies/{study_id}/prepare", status_code=202)
def prepare_study(study_id: Id, user: OwnerDep, db: SessionDep) -> dict:
    """Queue the preparation (again, after a failure)."""
    study = _study(db, study_id, user)
    try:
        job = service.queue_prepare(db, study, user.id)
    except StudyError as error:
        _raise(error)
    db.commit()
    return {"study": service.study_json(db, study), "job": job_json(job)}


@router.post("/studies/{study_id}/status")
def set_status(
    study_id: Id,
    user: OwnerDep,
    db: SessionDep,
    open: bool = Query(description="true: open for reading; false: close (answers kept)."),
) -> dict:
    """Close a ready study (no more answers) or open a closed one again."""
    study = _study(db, study_id, user)
    try:
        service.set_open(db, study, open)
    except StudyError as error:
        _raise(error)
    db.commit()
    return service.study_json(db, study)


@router.get("/studies/{study_id}/readers")
def list_readers(study_id: Id, user: OwnerDep, db: SessionDep) -> dict:
    study = _study(db, study_id, user)
    items = service.study_json(db, study, detail=True)["readers"]
    return {"items": items, "total": len(items), "limit": len(items), "offset": 0}


def _invitation(request: Request, reader: StudyReader, token: str, db: Session) -> dict:
    counts = service.answered_counts(db, reader.study)
    return {
        "reader": service.reader_json(reader, counts.get(reader.id, 0)),
        "token": token,
        "invitation_url": f"{str(request.base_url).rstrip('/')}/r/{token}",
    }


@router.post("/studies/{study_id}/readers", status_code=201)
def invite_reader(
    study_id: Id, body: ReaderCreate, request: Request, user: OwnerDep, db: SessionDep
) -> dict:
    """Invite a reader: the answer holds the invitation link and token (shown only now)."""
    study = _study(db, study_id, user)
    account = None
    if body.username:
        account = db.scalar(select(User).where(User.username == body.username.strip().lower()))
        if account is None:
            raise HTTPException(404, f"no user named {body.username!r}")
    try:
        reader, token = service.invite_reader(db, study, body.label, account)
    except StudyError as error:
        _raise(error)
    db.commit()
    return _invitation(request, reader, token, db)


@router.post("/studies/{study_id}/readers/{reader_id}/link")
def reissue_link(
    study_id: Id, reader_id: Id, request: Request, user: OwnerDep, db: SessionDep
) -> dict:
    """A new invitation link for a reader; the old one (and its sessions) stop working."""
    reader = _reader(db, _study(db, study_id, user), reader_id)
    token = service.reissue_link(db, reader)
    db.commit()
    return _invitation(request, reader, token, db)


@router.delete("/studies/{study_id}/readers/{reader_id}", status_code=204)
def withdraw_reader(study_id: Id, reader_id: Id, user: OwnerDep, db: SessionDep) -> None:
    """Withdraw an invitation; the reader's answers stay in the results."""
    reader = _reader(db, _study(db, study_id, user), reader_id)
    reader.revoked = True
    db.commit()


@router.get("/studies/{study_id}/results")
def get_results(study_id: Id, user: OwnerDep, db: SessionDep) -> dict:
    """Per reader and pooled statistics with intervals, agreement, ROC, per-arm rates."""
    return views.results(db, _study(db, study_id, user))


@router.get("/studies/{study_id}/plots/{name}.png")
def get_plot(study_id: Id, name: str, request: Request, user: OwnerDep, db: SessionDep):
    """``confusion``, ``roc`` or ``clicks`` as a PNG."""
    study = _study(db, study_id, user)
    try:
        png = views.plot(db, request.app.state.storage, study, name)
    except StudyError as error:
        _raise(error)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


EXPORTS = ("answers.csv", "mrmc.csv", "mrmc-imrmc.csv", "summary.json")


@router.get("/studies/{study_id}/export/{name}")
def export(study_id: Id, name: str, user: OwnerDep, db: SessionDep):
    """Downloads: ``answers.csv``, ``mrmc.csv``, ``mrmc-imrmc.csv`` or ``summary.json``."""
    if name not in EXPORTS:
        raise HTTPException(404, f"no export {name!r}; choose one of {', '.join(EXPORTS)}")
    study = _study(db, study_id, user)
    filename = f"study-{study.id}-{name}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if name == "summary.json":
        return JSONResponse(views.summary(db, study), headers=headers)
    text = views.export_csv(db, study, name)
    return PlainTextResponse(text, media_type="text/csv", headers=headers)
