"""``/api/v1/segmentations``, ``/api/v1/syntheses`` and ``/api/v1/models``.

Creating a segmentation or a synthesis queues a job (202); the answer holds the request and its
job, whose progress is at ``/api/v1/jobs/{id}`` and ``…/events``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import deps
from app.common import (
    Id,
    PageParams,
    page_params,
    paginate,
)
from app.db.tables import Job, Role, Segmentation, Synthesis, User, Volume
from app.processing import playground
from app.processing.schemas import (
    SegmentationBody,
    SynthesisBody,
    organ_types,
    segmentation_json,
    synthesis_json,
)
from app.registry.catalog import list_models as registry_models
from app.registry.catalog import resolve_model
from app.volumes import service as volume_service
from syntumor_core.errors import SynTumorError
from syntumor_core.synthesis import PROFILES

router = APIRouter(tags=["processing"])


KIND_NOUNS = {"image": "an image", "label": "a label map"}


def _image(db: Session, volume_id: Id, kind: str, user: User) -> Volume:
    """The volume, which must be of ``kind`` (404 if absent, 422 if of the other kind)."""
    volume = volume_service.visible_volume(db, volume_id, user)
    if volume is None:
        raise HTTPException(404, f"volume {volume_id} not found")
    if volume.kind != kind:
        raise HTTPException(
            422,
            f"volume {volume_id} is {KIND_NOUNS.get(volume.kind, volume.kind)}, "
            f"not {KIND_NOUNS[kind]}",
        )
    return volume


def _visible(row, user: User, what: str):
    if row is None or (user.role != Role.ADMIN and row.owner_id != user.id):
        raise HTTPException(404, f"{what} not found")
    return row


def _queue(db: Session, kind: str, row, param: str, extra: dict | None = None):
    """Add a request row and the job that will run it (the job's params name the row, plus
    ``extra`` options the row has no column for)."""
    job = Job(kind=kind, owner_id=row.owner_id, params={})
    db.add(job)
    db.flush()
    row.job_id = job.id
    db.add(row)
    db.flush()
    job.params = {param: row.id, **(extra or {})}
    db.commit()
    return row


@router.post("/segmentations", status_code=202)
def create_segmentation(
    body: SegmentationBody,
    request: Request,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> dict:
    """Queue a liver/tumor segmentation of a stored image with a registered model."""
    _image(db, body.image_id, "image", user)
    try:
        resolve_model(body.model, request.app.state.settings.data_dir, allow_path=False)
    except SynTumorError as error:
        raise HTTPException(422, str(error)) from None
    row = Segmentation(
        image_id=body.image_id,
        model=body.model,
        mode=body.mode,
        overlap=body.overlap,
        owner_id=user.id,
    )
    extra = {"lesion_filter": body.lesion_filter.model_dump()}
    return segmentation_json(_queue(db, "segment", row, "segmentation_id", extra))


@router.get("/segmentations")
def list_segmentations(
    image_id: Id | None = None,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    query = select(Segmentation).order_by(Segmentation.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Segmentation.owner_id == user.id)
    if image_id is not None:
        query = query.where(Segmentation.image_id == image_id)
    return paginate(db, query, page, segmentation_json)


@router.get("/segmentations/{segmentation_id}")
def get_segmentation(
    segmentation_id: Id,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> dict:
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    return segmentation_json(row)


def _result_file(request: Request, row, name: str) -> FileResponse:
    storage = request.app.state.storage
    path = storage.result_dir(row.job_id) / name
    if not path.is_file():
        raise HTTPException(404, f"{name} is not there yet: the job is {row.job.status}")
    return FileResponse(path, filename=f"{type(row).__name__.lower()}-{row.id}-{name}")


@router.get("/segmentations/{segmentation_id}/lesions.{fmt}")
def download_lesions(
    segmentation_id: Id,
    fmt: str,
    request: Request,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
):
    if fmt not in ("json", "csv"):
        raise HTTPException(404, "lesion tables come as lesions.json or lesions.csv")
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    return _result_file(request, row, f"lesions.{fmt}")


@router.get("/segmentations/{segmentation_id}/dicom-seg")
def download_dicom_seg(
    segmentation_id: Id,
    request: Request,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
):
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    if not row.dicom_seg_path:
        raise HTTPException(404, "no DICOM-SEG: made only for images uploaded as DICOM")
    return FileResponse(
        request.app.state.storage.absolute(row.dicom_seg_path),
        media_type="application/dicom",
        filename=f"segmentation-{row.id}.dcm",
    )


def _synthesis_inputs(db: Session, body: SynthesisBody, user: User) -> tuple[Volume, Volume]:
    """The image and mask of a synthesis request, checked (404/422 naming the problem)."""
    image = _image(db, body.image_id, "image", user)
    mask = _image(db, body.mask_id, "label", user)
    if list(mask.shape) != list(image.shape):
        raise HTTPException(
            422, f"mask {mask.id} has shape {mask.shape} but image {image.id} has {image.shape}"
        )
    types = organ_types()[body.organ]
    if body.tumor_type not in types:
        raise HTTPException(
            422, f"tumor type {body.tumor_type!r} is not one of {body.organ}'s: {types}"
        )
    if set(body.protect_labels) & set(body.mask_labels):
        raise HTTPException(422, "a label cannot be both organ (mask_labels) and protected")
    outside = [
        c
        for c in body.centers or []
        if not all(0 <= v < n for v, n in zip(c, image.shape, strict=True))
    ]
    if outside:
        raise HTTPException(
            422, f"centre {list(outside[0])} is no voxel of the image of shape {image.shape}"
        )
    return image, mask


@router.post(
    "/syntheses/preview",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}},
              "description": "The crop around the centres with its tumors: uncompressed NIfTI "
              "(int16 HU) on the image's grid (its affine places it in the image)."},
        404: {"description": "Image or mask not found."},
        422: {"description": "Bad request, or a centre the engine refuses (the detail says why)."},
    },
)  # fmt: skip
async def preview_synthesis(
    body: SynthesisBody,
    request: Request,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> Response:
    """Synthesize tumors at ``centers`` into a crop of the image, for the playground's preview
    (a bounded box around the centres: well under a second). Stores nothing."""
    if not body.centers:
        raise HTTPException(422, "a preview needs `centers`: where the tumors go")
    image, mask = _synthesis_inputs(db, body, user)
    wanted = playground.PreviewRequest(
        organ=body.organ, tumor_type=body.tumor_type, profile=body.profile, seed=body.seed,
        mask_labels=tuple(body.mask_labels), protect_labels=tuple(body.protect_labels),
        centers=tuple(tuple(c) for c in body.centers), radius_mm=body.radius_mm,
        drop_hu=body.drop_hu, texture_mm=body.texture_mm, rim=body.rim,
        mass_effect=body.mass_effect,
    )  # fmt: skip
    paths = (image.path, mask.path)
    db.close()  # hand the connection back during the work
    try:
        data = await asyncio.to_thread(
            playground.preview, request.app.state.storage, *paths, wanted
        )
    except SynTumorError as error:
        raise HTTPException(422, str(error)) from None
    return Response(
        data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"}
    )


@router.post("/syntheses", status_code=202)
def create_synthesis(
    body: SynthesisBody,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> dict:
    """Queue a tumor synthesis into a stored image inside a stored organ mask."""
    image, mask = _synthesis_inputs(db, body, user)
    row = Synthesis(
        image_id=image.id,
        mask_id=mask.id,
        mask_labels=body.mask_labels,
        organ=body.organ,
        tumor_type=body.tumor_type,
        profile=body.profile,
        seed=body.seed,
        owner_id=user.id,
    )
    row = _queue(db, "synthesize", row, "synthesis_id")
    extra = {"protect_labels": list(body.protect_labels)} if body.protect_labels else {}
    extra.update(body.placement())
    if extra:  # kept with the job's parameters (the row has no columns for them)
        row.job.params = {**row.job.params, **extra}
        db.commit()
    return synthesis_json(row)


@router.get("/syntheses")
def list_syntheses(
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    query = select(Synthesis).order_by(Synthesis.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Synthesis.owner_id == user.id)
    return paginate(db, query, page, synthesis_json)


@router.get("/syntheses/{synthesis_id}")
def get_synthesis(
    synthesis_id: Id,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> dict:
    return synthesis_json(
        _visible(db.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
    )


@router.get("/syntheses/{synthesis_id}/manifest")
def download_manifest(
    synthesis_id: Id,
    request: Request,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
):
    row = _visible(db.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
    return _result_file(request, row, "manifest.json")


@router.get("/models")
def list_models(request: Request, user: User = Depends(deps.require_researcher)) -> dict:
    """The registered segmentation models and whether their file is here; ``can_pull``: whether
    this user may download the others (admins, on the admin page's models panel)."""
    items = [
        {
            "name": s.entry.name,
            "arch": s.entry.arch,
            "status": s.status,
            "tumors": s.entry.tumors,
            "description": s.entry.description,
        }
        for s in registry_models(request.app.state.settings.data_dir)
    ]
    return {"items": items, "total": len(items), "limit": len(items), "offset": 0,
            "can_pull": user.role == Role.ADMIN, "pull_page": "/admin#models"}  # fmt: skip


@router.get("/synthesis-options")
def synthesis_options(_user: User = Depends(deps.require_researcher)) -> dict:
    """Organs, their tumor types and the profiles, for building forms."""
    return {"organs": organ_types(), "profiles": list(PROFILES)}
