"""HTML pages of reader studies for their owners: list, new, detail, results, printable report.

Readers' pages (invitation, start, the case viewer) are in :mod:`app.studies.reader_pages`.
Forms post back here with the session's CSRF token; the work is done by the same services as
the API's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select

from app.accounts import auth
from app.db import Id
from app.db.study_tables import Study, StudyReader
from app.db.tables import Role, User, Volume
from app.studies import service, views
from app.studies.machine_reader import stored_study_machine_reader
from app.studies.service import StudyError
from app.volumes import service as volume_service
from app.web import render, require_page_roles

router = APIRouter(include_in_schema=False)
OWNER_ROLES = (Role.ADMIN, Role.RESEARCHER)


def _owned(request: Request, db, study_id: Id) -> tuple[User, Study]:
    user = require_page_roles(request, *OWNER_ROLES)
    return user, service.visible_study(db, study_id, user)  # a StudyError (404) otherwise


@router.get("/studies")
def study_list(request: Request):
    """Owners see their studies; readers with an account see their reading assignments."""
    user = require_page_roles(request)
    with request.app.state.session_factory() as db:
        if user.role in OWNER_ROLES:
            query = select(Study).order_by(Study.id.desc())
            if user.role != Role.ADMIN:
                query = query.where(Study.owner_id == user.id)
            studies = [service.study_json(db, s, detail=True) for s in db.scalars(query)]
            return render(request, "studies/list.html", user=user, studies=studies, assignments=[])
        readers = db.scalars(
            select(StudyReader).where(
                StudyReader.user_id == user.id, StudyReader.revoked.is_(False)
            )
        ).all()
        assignments = [{"id": r.id, "title": r.study.title, "label": r.label,
                        "status": r.study.status} for r in readers]  # fmt: skip
        return render(request, "studies/list.html", user=user, studies=[], assignments=assignments)


def _volumes_seen_by(db, user: User, spec: dict) -> None:
    """A volume of the spec that the user may not see is as good as absent."""
    hidden = volume_service.first_hidden(db, user, spec)
    if hidden is not None:
        raise StudyError(f"volume {hidden} not found", 404)


def _volume_choices(db, user) -> list[dict]:
    """The user's image volumes with their first label map (the form's choices)."""
    images = select(Volume).where(Volume.kind == "image").order_by(Volume.id)
    images = db.scalars(volume_service.visible(images, user)).all()
    labels = select(Volume).where(Volume.kind == "label").order_by(Volume.id)
    labelled = {}
    for label in db.scalars(volume_service.visible(labels, user)):
        labelled.setdefault(label.image_id, label)
    from app.studies.checks import origin_of

    return [
        {"id": v.id, "name": v.name, "source": v.source, "origin": origin_of(v), "shape": v.shape,
         "spacing": [round(s, 3) for s in v.spacing], "label": labelled.get(v.id) is not None,
         "labels": (labelled[v.id].meta or {}).get("labels") if v.id in labelled else None}
        for v in images
    ]  # fmt: skip


LIST_FIELDS = ("arm0_volumes", "examples", "arm1_healthy", "arm1_volumes", "practice_real",
               "practice_synthetic", "acknowledge")  # fmt: skip


def _new_form(request: Request, user, db, *, form=None, error=None, checks=None, status=200):
    """The new-study form, filled again with what was sent (lists included)."""
    fields = {key: value for key, value in (form or {}).items() if key not in LIST_FIELDS}
    chosen = {name: [str(v) for v in form.getlist(name)] if form else [] for name in LIST_FIELDS}
    return render(request, "studies/new.html", status_code=status, user=user,
                  volumes=_volume_choices(db, user), error=error, form=fields, chosen=chosen,
                  checks=checks)  # fmt: skip


@router.get("/studies/new")
def new_study_form(request: Request):
    user = require_page_roles(request, *OWNER_ROLES)
    with request.app.state.session_factory() as db:
        return _new_form(request, user, db)


def _ints(form, name: str) -> list[int]:
    return [int(value) for value in form.getlist(name) if str(value).strip().isdigit()]


def _optional_float(text) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def spec_from_form(form) -> dict:
    """The API's study spec from the new-study form's fields."""
    labels = [int(v) for v in str(form.get("mask_labels") or "1").replace(" ", "").split(",") if v]
    second = form.get("arm1_source") or "synthesize"
    arm1 = {"name": form.get("arm1_name") or "Synthetic tumors", "truth": form.get("arm1_truth") or "synthetic",
            "source": second, "organ": form.get("organ") or "liver",
            "profile": form.get("profile") or "paper"}  # fmt: skip
    if second == "synthesize":
        arm1["healthy"] = [
            {"image_id": i, "mask_labels": labels} for i in _ints(form, "arm1_healthy")
        ]
    else:
        arm1["volumes"] = [{"image_id": i} for i in _ints(form, "arm1_volumes")]
    caption = (form.get("example_caption") or "Example").strip()
    practice = [{"image_id": i, "truth": truth} for truth in ("real", "synthetic")
                for i in _ints(form, f"practice_{truth}")]  # fmt: skip
    return {
        "title": (form.get("title") or "").strip(),
        "description": form.get("description") or "",
        "instructions": form.get("instructions") or "",
        "allow_unsure": form.get("allow_unsure") == "on",
        "confidence_scale": form.get("confidence_scale") == "on",
        "allow_change": form.get("allow_change") == "on",
        "click_synthetic": form.get("click_synthetic") == "on",
        "repeats": int(form.get("repeats") or 0),
        "box_mm": _optional_float(form.get("box_mm")),
        "spacing_mm": _optional_float(form.get("spacing_mm")),
        "arms": [
            {"name": form.get("arm0_name") or "Real tumors", "truth": form.get("arm0_truth") or "real",
             "source": "volumes", "volumes": [{"image_id": i} for i in _ints(form, "arm0_volumes")]},
            arm1,
        ],
        "examples": [{"image_id": i, "caption": caption, "arm": 0} for i in _ints(form, "examples")],
        "practice": practice,
        "questions": {"comment": form.get("ask_comment") == "on",
                      "features": form.get("ask_features") == "on"},
        "acknowledge": [str(code) for code in form.getlist("acknowledge")],
    }  # fmt: skip


@router.post("/studies/new")
async def new_study_submit(request: Request):
    from pydantic import ValidationError

    from app.studies.schemas import StudyCreate

    user = require_page_roles(request, *OWNER_ROLES)
    form = await request.form()
    auth.check_csrf(request, form.get("csrf_token"))
    with request.app.state.session_factory() as db:
        try:
            spec = StudyCreate.model_validate(spec_from_form(form)).model_dump()
            _volumes_seen_by(db, user, spec)
            study = service.create_study(db, user, spec)
            service.queue_prepare(db, study, user.id)
            db.commit()
            return RedirectResponse(f"/studies/{study.id}", status_code=303)
        except (StudyError, ValidationError, ValueError) as error:
            db.rollback()
            checks = getattr(error, "checks", None)
            report = {"checks": checks} if checks is not None else None
            return _new_form(request, user, db, form=form, error=_message(error),
                             checks=report, status=getattr(error, "status", 422))  # fmt: skip


@router.post("/studies/new/checks")
async def new_study_checks(request: Request):
    """The design checks of the form as it stands (JSON, for the form's live check list)."""
    from pydantic import ValidationError

    from app.studies.checks import design_report
    from app.studies.schemas import StudyCreate

    user = require_page_roles(request, *OWNER_ROLES)
    form = await request.form()
    auth.check_csrf(request, form.get("csrf_token"))
    with request.app.state.session_factory() as db:
        try:
            spec = StudyCreate.model_validate(spec_from_form(form)).model_dump()
            _volumes_seen_by(db, user, spec)
            return design_report(db, spec)
        except (StudyError, ValidationError, ValueError) as error:
            status = getattr(error, "status", 422)
            return JSONResponse({"detail": _message(error)}, status_code=status)


def _message(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".removeprefix(": ")
            for e in error.errors()
        )
    return str(error)


def _detail(request: Request, study_id: Id, **extra):
    from app.studies.results import design_summary

    with request.app.state.session_factory() as db:
        user, study = _owned(request, db, study_id)
        data = service.study_json(db, study, detail=True)
        return render(request, "studies/detail.html", user=user, study=data,
                      design=design_summary(study), **extra)  # fmt: skip


@router.get("/studies/{study_id}")
def study_detail(request: Request, study_id: Id):
    return _detail(request, study_id, invitation=None, error=None)


async def _form_action(request: Request, study_id: Id, action) -> dict:
    form = await request.form()
    auth.check_csrf(request, form.get("csrf_token"))
    with request.app.state.session_factory() as db:
        user, study = _owned(request, db, study_id)
        try:
            extra = action(db, user, study, form) or {}
            db.commit()
        except StudyError as error:
            db.rollback()
            extra = {"error": str(error)}
    return {"invitation": None, "error": None, **extra}


@router.post("/studies/{study_id}/prepare")
async def study_prepare(request: Request, study_id: Id):
    extra = await _form_action(
        request,
        study_id,
        lambda db, user, study, form: service.queue_prepare(db, study, user.id) and None,
    )
    if extra["error"]:
        return _detail(request, study_id, **extra)
    return RedirectResponse(f"/studies/{study_id}", status_code=303)


@router.post("/studies/{study_id}/readers")
async def study_invite(request: Request, study_id: Id):
    def invite(db, user, study, form):
        label = (form.get("label") or "").strip()
        if not label:
            raise StudyError("give the reader a label, e.g. 'Reader 1 (senior)'")
        account = None
        if (form.get("username") or "").strip():
            name = form.get("username").strip().lower()
            account = db.scalar(select(User).where(User.username == name))
            if account is None:
                raise StudyError(f"no user named {name!r}", 404)
        reader, token = service.invite_reader(db, study, label[:100], account)
        return {"invitation": {"label": reader.label, "url": _link(request, token)}}

    return _detail(request, study_id, **await _form_action(request, study_id, invite))


@router.post("/studies/{study_id}/readers/{reader_id}/link")
async def study_relink(request: Request, study_id: Id, reader_id: Id):
    def relink(db, user, study, form):
        reader = db.get(StudyReader, reader_id)
        if reader is None or reader.study_id != study.id:
            raise StudyError(f"reader {reader_id} not found", 404)
        return {"invitation": {"label": reader.label,
                               "url": _link(request, service.reissue_link(db, reader))}}  # fmt: skip

    return _detail(request, study_id, **await _form_action(request, study_id, relink))


@router.post("/studies/{study_id}/status")
async def study_status(request: Request, study_id: Id):
    def toggle(db, user, study, form):
        service.set_open(db, study, form.get("open") == "true")

    extra = await _form_action(request, study_id, toggle)
    return _detail(request, study_id, **extra)


def _link(request: Request, token: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/r/{token}"


@router.get("/studies/{study_id}/results")
def study_results(request: Request, study_id: Id):
    with request.app.state.session_factory() as db:
        user, study = _owned(request, db, study_id)
        data = service.study_json(db, study, detail=True)
        machine_reader = stored_study_machine_reader(study, request.app.state.storage)
        return render(request, "studies/results.html", user=user, study=data,
                      results=views.results(db, study), machine_reader=machine_reader)  # fmt: skip


@router.get("/studies/{study_id}/report")
def study_report(request: Request, study_id: Id):
    """A printable report: design, every number with its interval and its definition."""
    with request.app.state.session_factory() as db:
        user, study = _owned(request, db, study_id)
        data = service.study_json(db, study, detail=True)
        return render(request, "studies/report.html", user=user, study=data,
                      results=views.results(db, study))  # fmt: skip
