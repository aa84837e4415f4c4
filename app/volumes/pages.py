"""Pages of the volumes: upload, the list of images, and the volume page with its viewer.

The pages render what the server knows at request time (rows turned into the API's JSON, so
the page scripts see the same shapes as the REST API); everything that changes state goes
through the REST API from the page's ES modules, with the CSRF header.
"""

from __future__ import annotations

from math import ceil

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select

from app.db import Id
from app.db.tables import Job, Role, Segmentation, Synthesis, User, Volume
from app.errors import NotFound
from app.volumes import service as volume_service
from app.volumes.schemas import volume_json
from app.web import render, require_page_roles

router = APIRouter(include_in_schema=False)
VOLUMES_PER_PAGE = 25
WORK_ROLES = (Role.ADMIN, Role.RESEARCHER)


def researcher_page(request: Request) -> User:
    """The user of a page that needs a researcher or an admin (login redirect / 403 page)."""
    return require_page_roles(request, *WORK_ROLES)


def visible_rows(query, user: User, model):
    """Limit a query of segmentations or syntheses to the user's own (admins see all)."""
    if user.role != Role.ADMIN:
        query = query.where(model.owner_id == user.id)
    return query


@router.get("/upload")
def upload_page(request: Request):
    user = researcher_page(request)
    limit_mb = request.app.state.settings.max_upload_mb
    return render(request, "volumes/upload.html", user=user, max_upload_mb=limit_mb)


def _label_counts(session, image_ids: list[int]) -> dict[int, int]:
    if not image_ids:
        return {}
    query = (
        select(Volume.image_id, func.count())
        .where(Volume.image_id.in_(image_ids))
        .group_by(Volume.image_id)
    )
    return dict(session.execute(query).all())


def _latest_segmentations(session, image_ids: list[int], user: User) -> dict[int, dict]:
    """The newest segmentation the user sees of each image: id, job id, status, and how many
    there are in all (the volume list's "Segmentation" column)."""
    if not image_ids:
        return {}
    query = visible_rows(
        select(Segmentation.id, Segmentation.image_id, Job.id, Job.status)
        .join(Job, Segmentation.job_id == Job.id)
        .where(Segmentation.image_id.in_(image_ids)),
        user,
        Segmentation,
    ).order_by(Segmentation.id.desc())
    latest: dict[int, dict] = {}
    for segmentation_id, image_id, job_id, status in session.execute(query):
        if image_id in latest:
            latest[image_id]["count"] += 1
        else:
            latest[image_id] = {"id": segmentation_id, "job_id": job_id, "status": status,
                                "count": 1}  # fmt: skip
    return latest


@router.get("/volumes")
def volume_list(request: Request, page: int = Query(1, ge=1, le=100_000)):
    user = researcher_page(request)
    with request.app.state.session_factory() as session:
        images = volume_service.visible(select(Volume).where(Volume.kind == "image"), user)
        total = session.scalar(select(func.count()).select_from(images.subquery())) or 0
        pages = max(1, ceil(total / VOLUMES_PER_PAGE))
        page = min(page, pages)
        rows = session.scalars(
            images.order_by(Volume.id.desc())
            .limit(VOLUMES_PER_PAGE)
            .offset((page - 1) * VOLUMES_PER_PAGE)
        ).all()
        ids = [row.id for row in rows]
        label_counts = _label_counts(session, ids)
        segmentations = _latest_segmentations(session, ids, user)
        volumes = [
            {**volume_json(row), "label_count": label_counts.get(row.id, 0),
             "segmentation": segmentations.get(row.id)}
            for row in rows
        ]  # fmt: skip
    return render(
        request,
        "volumes/list.html",
        user=user,
        volumes=volumes,
        page=page,
        pages=pages,
        total=total,
    )


def _volume_context(session, volume: Volume, user: User) -> dict:
    query = select(Volume).where(Volume.image_id == volume.id).order_by(Volume.id)
    labels = session.scalars(volume_service.visible(query, user)).all()
    segmentations = session.scalars(
        visible_rows(
            select(Segmentation).where(Segmentation.image_id == volume.id), user, Segmentation
        ).order_by(Segmentation.id.desc())
    ).all()
    syntheses = session.scalars(
        visible_rows(
            select(Synthesis).where(Synthesis.image_id == volume.id), user, Synthesis
        ).order_by(Synthesis.id.desc())
    ).all()
    made_by = session.scalar(select(Synthesis).where(Synthesis.out_image_id == volume.id))
    return {
        "volume": {**volume_json(volume), "label_maps": [volume_json(v) for v in labels]},
        "segmentations": [
            {"id": s.id, "model": s.model, "status": s.job.status, "label_id": s.label_id}
            for s in segmentations
        ],
        "syntheses": [
            {"id": s.id, "organ": s.organ, "tumor_type": s.tumor_type, "status": s.job.status}
            for s in syntheses
        ],
        "made_by_synthesis": made_by.id if made_by is not None else None,
    }


@router.get("/volumes/{volume_id}")
def volume_page(request: Request, volume_id: Id, overlay: Id | None = None):
    user = researcher_page(request)
    with request.app.state.session_factory() as session:
        volume = volume_service.visible_volume(session, volume_id, user)
        if volume is None:
            raise NotFound(f"volume {volume_id} not found")
        if volume.kind == "label" and volume.image_id is not None:
            # A label map is shown on its image, as the chosen overlay.
            return RedirectResponse(
                f"/volumes/{volume.image_id}?overlay={volume.id}", status_code=303
            )
        context = _volume_context(session, volume, user)
    return render(
        request, "volumes/view.html", user=user, page_data={**context, "overlay": overlay}
    )


@router.get("/volumes/{volume_id}/segment")
def volume_segment(request: Request, volume_id: Id):
    """The segmentation form lives on the volume page."""
    researcher_page(request)
    return RedirectResponse(f"/volumes/{volume_id}#segment", status_code=303)
