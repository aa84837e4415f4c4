"""Pages of the work done on volumes: segmentations, the synthesis form and results, jobs.

Results are shown to their owner and to admins (others get 404, as from the API). The pages
embed the API's JSON for the row; their scripts follow a running job through
``/api/v1/jobs/{id}/events`` and then load the outputs into NiiVue.
"""

from __future__ import annotations

from math import ceil

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from app.db import Id
from app.db.tables import Job, Role, Segmentation, Synthesis, User, Volume
from app.errors import NotFound
from app.jobs.schemas import job_json
from app.processing.schemas import organ_types, segmentation_json, synthesis_json
from app.volumes import service as volume_service
from app.volumes.pages import researcher_page
from app.volumes.schemas import volume_json
from app.web import render
from syntumor_core.synthesis import PROFILES

router = APIRouter(include_in_schema=False)
JOBS_PER_PAGE = 25
RESULT_PAGES = {"segment": "segmentation", "synthesize": "synthesis"}


def _owned(row, user: User, what: str):
    if row is None or (user.role != Role.ADMIN and row.owner_id != user.id):
        raise NotFound(f"{what} not found")
    return row


def _volume_or_none(session, volume_id: Id | None) -> dict | None:
    volume = session.get(Volume, volume_id) if volume_id is not None else None
    return volume_json(volume) if volume is not None else None


@router.get("/segmentations/{segmentation_id}")
def segmentation_page(request: Request, segmentation_id: Id):
    user = researcher_page(request)
    with request.app.state.session_factory() as session:
        row = _owned(
            session.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}"
        )
        data = {
            "segmentation": segmentation_json(row),
            "image": _volume_or_none(session, row.image_id),
            "label": _volume_or_none(session, row.label_id),
        }
    return render(request, "volumes/segmentation.html", user=user, page_data=data)


@router.get("/synthesize")
def synthesize_page(request: Request, image_id: Id | None = None):
    user = researcher_page(request)
    with request.app.state.session_factory() as session:
        images = session.scalars(
            volume_service.visible(select(Volume).where(Volume.kind == "image"), user)
            .order_by(Volume.id.desc())
            .limit(500)
        ).all()
        labels = session.scalars(
            volume_service.visible(select(Volume), user)
            .where(Volume.kind == "label", Volume.image_id.in_([v.id for v in images]))
            .order_by(Volume.id)
        ).all()
        data = {
            "images": [volume_json(v) for v in images],
            "label_maps": [volume_json(v) for v in labels],
            "options": {"organs": organ_types(), "profiles": list(PROFILES)},
            "selected_image": image_id,
        }
    return render(request, "volumes/synthesize.html", user=user, page_data=data)


@router.get("/syntheses/{synthesis_id}")
def synthesis_page(request: Request, synthesis_id: Id):
    user = researcher_page(request)
    with request.app.state.session_factory() as session:
        row = _owned(session.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
        data = {
            "synthesis": synthesis_json(row),
            "image": _volume_or_none(session, row.image_id),
            "mask": _volume_or_none(session, row.mask_id),
            "out_image": _volume_or_none(session, row.out_image_id),
            "out_label": _volume_or_none(session, row.out_label_id),
        }
    return render(request, "volumes/synthesis.html", user=user, page_data=data)


def _result_link(job: Job) -> str | None:
    """The page of a job's result (segmentation or synthesis), if it has one."""
    what = RESULT_PAGES.get(job.kind)
    row_id = (job.params or {}).get(f"{what}_id") if what else None
    if row_id is None:
        return None
    return f"/segmentations/{row_id}" if what == "segmentation" else f"/syntheses/{row_id}"


@router.get("/jobs")
def jobs_page(request: Request, page: int = Query(1, ge=1, le=100_000)):
    user = researcher_page(request)
    with request.app.state.session_factory() as session:
        query = select(Job)
        if user.role != Role.ADMIN:
            query = query.where(Job.owner_id == user.id)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        pages = max(1, ceil(total / JOBS_PER_PAGE))
        page = min(page, pages)
        rows = session.scalars(
            query.order_by(Job.id.desc()).limit(JOBS_PER_PAGE).offset((page - 1) * JOBS_PER_PAGE)
        ).all()
        jobs = [{**job_json(job), "link": _result_link(job)} for job in rows]
    return render(
        request, "volumes/jobs.html", user=user, jobs=jobs, page=page, pages=pages, total=total
    )
