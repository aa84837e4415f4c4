"""``/api/v1/studies``: reader studies for their owners (researchers and admins).

Create a study from stored volumes (two arms: stored volumes, or healthy volumes into which
the worker synthesizes tumors matched to the other arm's sizes), prepare it (a job), invite
readers (each gets a link with a token, shown once), and read the results, plots and exports.
A study is visible to its owner and to admins only; for anyone else it does not exist (404).
The reader's side is ``/api/v1/reader`` (:mod:`app.studies.reader_api`).

Every JSON answer is built through its ``…Out`` model (:mod:`app.studies.schemas`); every error
is a :class:`~app.studies.errors.StudyError` or another :class:`~app.errors.AppError`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.common import Id, Page, PageDep, paginate
from app.db.study_tables import Study, StudyReader
from app.db.tables import Role, User
from app.deps import ResearcherDep, SessionDep
from app.errors import DESCRIPTIONS, error_responses, json_error_responses
from app.jobs.schemas import job_json
from app.studies import checks as studies_checks
from app.studies import service, views
from app.studies.errors import StudyError
from app.studies.schemas import (
    EXPORTS,
    PLOTS,
    DesignRefusedBody,
    DesignReportOut,
    InvitationOut,
    PrepareOut,
    ReaderCreate,
    ReaderOut,
    ResultsOut,
    StudyCreate,
    StudyCreatedOut,
    StudyDetailOut,
    StudyInvalidBody,
    StudyOut,
    SummaryOut,
)
from app.volumes import service as volume_service

router = APIRouter(tags=["studies"])

# Who may call: a logged-in owner (401, 403: another role or no CSRF header, 429: too many
# wrong tokens), with parameters that validate (422).
OWNER_ERRORS = (401, 403, 422, 429)
BODY_ERRORS = (400,)  # a JSON body that cannot be parsed at all


def _errors(*statuses: int, json_only: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route; ``json_only`` for a route whose own answer is not JSON."""
    describe = json_error_responses if json_only else error_responses
    return describe(*sorted({*OWNER_ERRORS, *statuses}))


def _study(db: Session, study_id: Id, user: User) -> Study:
    return service.visible_study(db, study_id, user)


def _reader(db: Session, study: Study, reader_id: Id) -> StudyReader:
    reader = db.get(StudyReader, reader_id)
    if reader is None or reader.study_id != study.id:
        raise StudyError(f"reader {reader_id} not found in study {study.id}", 404)
    return reader


def _out(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    return model.model_validate(data)


@router.get("/studies", response_model=Page[StudyOut], responses=_errors())
def list_studies(user: ResearcherDep, db: SessionDep, page: PageDep) -> dict:
    """The caller's studies (every study for an admin), newest first."""
    query = select(Study).order_by(Study.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Study.owner_id == user.id)
    return paginate(db, query, page, lambda study: service.study_json(db, study))


def _volumes_seen_by(db: Session, user: User, body: BaseModel) -> None:
    """404 for a volume of the spec that the user may not see (as for one that is not there)."""
    hidden = volume_service.first_hidden(db, user, body.model_dump())
    if hidden is not None:
        raise StudyError(f"volume {hidden} not found", 404)


@router.post(
    "/studies/checks", response_model=DesignReportOut, responses=_errors(*BODY_ERRORS, 404)
)
def check_design(body: StudyCreate, user: ResearcherDep, db: SessionDep) -> DesignReportOut:
    """The design checks of a study spec, before anything is created or prepared.

    Each check has a ``code``, a ``level`` (``info``; ``warning``: a confound to acknowledge by
    listing its code in ``acknowledge``; ``error``: the study cannot be blinded), a
    ``message`` and the ``cue`` it leaves to readers. ``ok`` says whether ``POST /studies``
    would accept the spec. A volume that is not there (or not yours) answers 404; a label map
    given as an image 422.
    """
    _volumes_seen_by(db, user, body)
    return _out(DesignReportOut, studies_checks.design_report(db, body.model_dump()))


@router.post(
    "/studies",
    status_code=201,
    response_model=StudyCreatedOut,
    responses={
        **_errors(*BODY_ERRORS, 404),
        409: {
            "model": DesignRefusedBody,
            "description": "Design warnings not acknowledged "
            "(`checks` lists every finding; acknowledge the warnings' codes).",
        },
        422: {
            "model": StudyInvalidBody,
            "description": DESCRIPTIONS[422] + " A design that "
            "cannot be blinded also lists its `checks`.",
        },
    },
)
def create_study(body: StudyCreate, user: ResearcherDep, db: SessionDep) -> StudyCreatedOut:
    """Create a study (a draft) and, unless ``prepare`` is false, queue its preparation.

    The design is checked first (``POST /studies/checks``): errors answer 422 and warnings not
    listed in ``acknowledge`` answer 409, both with the ``checks`` beside the ``detail``.
    """
    _volumes_seen_by(db, user, body)
    try:
        study = service.create_study(db, user, body.model_dump())
        job = service.queue_prepare(db, study, user.id) if body.prepare else None
    except StudyError:
        db.rollback()
        raise
    db.commit()
    data = service.study_json(db, study, detail=True)
    return _out(StudyCreatedOut, {**data, "job": job_json(job) if job else None})


@router.get("/studies/{study_id}", response_model=StudyDetailOut, responses=_errors(404))
def get_study(study_id: Id, user: ResearcherDep, db: SessionDep) -> StudyDetailOut:
    """Everything about a study, truth included (owner and admins only)."""
    return _out(StudyDetailOut, service.study_json(db, _study(db, study_id, user), detail=True))


@router.delete(
    "/studies/{study_id}", status_code=204, response_class=Response, responses=_errors(404)
)
def delete_study(study_id: Id, request: Request, user: ResearcherDep, db: SessionDep) -> None:
    """Delete a study with its readers, answers and blinded copies."""
    service.delete_study(db, request.app.state.storage, _study(db, study_id, user))


@router.post(
    "/studies/{study_id}/prepare",
    status_code=202,
    response_model=PrepareOut,
    responses=_errors(404, 409),
)
def prepare_study(study_id: Id, user: ResearcherDep, db: SessionDep) -> PrepareOut:
    """Queue the preparation (again, after a failure); 409 unless the study is a draft or
    failed."""
    study = _study(db, study_id, user)
    job = service.queue_prepare(db, study, user.id)
    db.commit()
    return _out(PrepareOut, {"study": service.study_json(db, study), "job": job_json(job)})


@router.post("/studies/{study_id}/status", response_model=StudyOut, responses=_errors(404, 409))
def set_status(
    study_id: Id,
    user: ResearcherDep,
    db: SessionDep,
    open: bool = Query(description="true: open for reading; false: close (answers kept)."),
) -> StudyOut:
    """Close a ready study (no more answers) or open a closed one again (409 otherwise)."""
    study = _study(db, study_id, user)
    service.set_open(db, study, open)
    db.commit()
    return _out(StudyOut, service.study_json(db, study))


@router.get("/studies/{study_id}/readers", response_model=Page[ReaderOut], responses=_errors(404))
def list_readers(study_id: Id, user: ResearcherDep, db: SessionDep) -> dict:
    """Every reader of the study, with their progress (one page holds them all)."""
    study = _study(db, study_id, user)
    items = service.study_json(db, study, detail=True)["readers"]
    return {"items": items, "total": len(items), "limit": len(items), "offset": 0}


def _invitation(request: Request, reader: StudyReader, token: str, db: Session) -> InvitationOut:
    counts = service.answered_counts(db, reader.study)
    return _out(InvitationOut, {
        "reader": service.reader_json(reader, counts.get(reader.id, 0)),
        "token": token,
        "invitation_url": f"{str(request.base_url).rstrip('/')}/r/{token}",
    })  # fmt: skip


@router.post(
    "/studies/{study_id}/readers",
    status_code=201,
    response_model=InvitationOut,
    responses=_errors(*BODY_ERRORS, 404, 409),
)
def invite_reader(
    study_id: Id, body: ReaderCreate, request: Request, user: ResearcherDep, db: SessionDep
) -> InvitationOut:
    """Invite a reader: the answer holds the invitation link and token (shown only now).

    404 for an unknown ``username``; 409 while the study is not ready, or for a label taken.
    """
    study = _study(db, study_id, user)
    account = None
    if body.username:
        account = db.scalar(select(User).where(User.username == body.username.strip().lower()))
        if account is None:
            raise StudyError(f"no user named {body.username!r}", 404)
    reader, token = service.invite_reader(db, study, body.label, account)
    db.commit()
    return _invitation(request, reader, token, db)


@router.post(
    "/studies/{study_id}/readers/{reader_id}/link",
    response_model=InvitationOut,
    responses=_errors(404),
)
def reissue_link(
    study_id: Id, reader_id: Id, request: Request, user: ResearcherDep, db: SessionDep
) -> InvitationOut:
    """A new invitation link for a reader; the old one (and its sessions) stop working."""
    reader = _reader(db, _study(db, study_id, user), reader_id)
    token = service.reissue_link(db, reader)
    db.commit()
    return _invitation(request, reader, token, db)


@router.delete(
    "/studies/{study_id}/readers/{reader_id}",
    status_code=204,
    response_class=Response,
    responses=_errors(404),
)
def withdraw_reader(study_id: Id, reader_id: Id, user: ResearcherDep, db: SessionDep) -> None:
    """Withdraw an invitation; the reader's answers stay in the results."""
    reader = _reader(db, _study(db, study_id, user), reader_id)
    reader.revoked = True
    db.commit()


@router.get("/studies/{study_id}/results", response_model=ResultsOut, responses=_errors(404))
def get_results(study_id: Id, user: ResearcherDep, db: SessionDep) -> ResultsOut:
    """Per reader and pooled statistics with intervals, agreement, ROC, per-arm rates."""
    return _out(ResultsOut, views.results(db, _study(db, study_id, user)))


class PNGResponse(Response):
    media_type = "image/png"


@router.get(
    "/studies/{study_id}/plots/{name}.png",
    response_class=PNGResponse,
    responses={
        200: {
            "description": "The plot.",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **_errors(404, json_only=True),
    },
)
def get_plot(
    study_id: Id,
    request: Request,
    user: ResearcherDep,
    db: SessionDep,
    name: str = Path(
        description="confusion, roc or clicks (another name: 404).",
        json_schema_extra={"enum": list(PLOTS)},
    ),
) -> PNGResponse:
    """``confusion``, ``roc`` or ``clicks`` as a PNG."""
    study = _study(db, study_id, user)
    png = views.plot(db, request.app.state.storage, study, name)
    return PNGResponse(png, headers={"Cache-Control": "no-store"})


@router.get(
    "/studies/{study_id}/export/{name}",
    response_class=JSONResponse,
    responses={
        200: {
            "model": SummaryOut,
            "description": "``summary.json``: JSON; the others: CSV, as an attachment.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **_errors(404),
    },
)
def export(
    study_id: Id,
    user: ResearcherDep,
    db: SessionDep,
    name: str = Path(
        description="answers.csv, mrmc.csv, mrmc-imrmc.csv or summary.json (another: 404).",
        json_schema_extra={"enum": list(EXPORTS)},
    ),
) -> Response:
    """Downloads: ``answers.csv``, ``mrmc.csv``, ``mrmc-imrmc.csv`` or ``summary.json``."""
    if name not in EXPORTS:
        raise StudyError(f"no export {name!r}; choose one of {', '.join(EXPORTS)}", 404)
    study = _study(db, study_id, user)
    filename = f"study-{study.id}-{name}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if name == "summary.json":
        summary = SummaryOut.model_validate(views.summary(db, study))
        return JSONResponse(summary.model_dump(mode="json", by_alias=True), headers=headers)
    text = views.export_csv(db, study, name)
    return PlainTextResponse(text, media_type="text/csv", headers=headers)
