"""``/api/v1/segmentations``, ``/api/v1/syntheses`` and ``/api/v1/models``.

Creating a segmentation or a synthesis queues a job (202); the answer holds the request and its
job, whose progress is at ``/api/v1/jobs/{id}`` and ``…/events``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.common import Id, Page, PageDep, file_responses, paginate
from app.db.tables import Role, Segmentation, Synthesis, User, Volume
from app.deps import ResearcherDep, SessionDep
from app.errors import CALLER_STATUSES, AppError, Invalid, NotFound, error_responses
from app.jobs.queue import enqueue
from app.processing import playground
from app.processing.schemas import (
    ModelListOut,
    ModelOut,
    SegmentationBatchBody,
    SegmentationBatchOut,
    SegmentationBody,
    SegmentationOptions,
    SegmentationOut,
    SynthesisBody,
    SynthesisOptionsOut,
    SynthesisOut,
    organ_types,
    segmentation_out,
    synthesis_out,
)
from app.registry.catalog import list_models as registry_models
from app.registry.catalog import resolve_model
from app.volumes import service as volume_service
from syntumor_core.errors import SynTumorError
from syntumor_core.synthesis import PROFILES

router = APIRouter(tags=["processing"])
LESION_FORMATS = ("json", "csv")
BINARY = {"type": "string", "format": "binary"}


KIND_NOUNS = {"image": "an image", "label": "a label map"}


def _image(db: Session, volume_id: Id, kind: str, user: User) -> Volume:
    """The volume, which must be of ``kind`` (404 if absent, 422 if of the other kind)."""
    volume = volume_service.visible_volume(db, volume_id, user)
    if volume is None:
        raise NotFound(f"volume {volume_id} not found")
    if volume.kind != kind:
        raise Invalid(
            f"volume {volume_id} is {KIND_NOUNS.get(volume.kind, volume.kind)}, "
            f"not {KIND_NOUNS[kind]}",
            code="wrong_volume_kind",
        )
    return volume


def _visible(row, user: User, what: str):
    if row is None or (user.role != Role.ADMIN and row.owner_id != user.id):
        raise NotFound(f"{what} not found")
    return row


def _queue(db: Session, kind: str, row, param: str, extra: dict | None = None):
    """Add a request row and the job that will run it (the job's params name the row, plus
    ``extra`` options the row has no column for); the caller commits."""
    job = enqueue(db, kind, extra, owner_id=row.owner_id)
    row.job_id = job.id
    db.add(row)
    db.flush()
    job.params = {param: row.id, **job.params}
    return row


def _check_model(request: Request, model: str) -> None:
    """422 unless ``model`` is registered here (a path is never taken)."""
    try:
        resolve_model(model, request.app.state.settings.data_dir, allow_path=False)
    except SynTumorError as error:
        raise Invalid(str(error), code="unknown_model") from None


def _queue_segmentation(
    db: Session, image_id: int, options: SegmentationOptions, user: User
) -> Segmentation:
    row = Segmentation(image_id=image_id, model=options.model, mode=options.mode,
                       overlap=options.overlap, owner_id=user.id)  # fmt: skip
    return _queue(db, "segment", row, "segmentation_id", options.job_options())


@router.post(
    "/segmentations",
    status_code=202,
    response_model=SegmentationOut,
    responses=error_responses(400, *CALLER_STATUSES, 404, 422),
)
def create_segmentation(
    body: SegmentationBody, request: Request, user: ResearcherDep, db: SessionDep
) -> SegmentationOut:
    """Queue a liver/tumor segmentation of a stored image with a registered model (404: no such
    image; 422: not an image, or a model that is not registered here)."""
    _image(db, body.image_id, "image", user)
    _check_model(request, body.model)
    row = _queue_segmentation(db, body.image_id, body, user)
    db.commit()
    return segmentation_out(row)


@router.post(
    "/segmentations/batch",
    status_code=202,
    response_model=SegmentationBatchOut,
    responses=error_responses(400, *CALLER_STATUSES, 404, 422),
)
def create_segmentation_batch(
    body: SegmentationBatchBody, request: Request, user: ResearcherDep, db: SessionDep
) -> SegmentationBatchOut:
    """Queue one segmentation per image, all with the same options. Every image is checked
    first: one that is missing (404) or not an image (422), or an id given twice (422),
    refuses the whole batch, naming it; nothing is queued then."""
    twice = sorted({i for i in body.image_ids if body.image_ids.count(i) > 1})
    if twice:
        raise Invalid(f"image {twice[0]} is listed more than once in image_ids; nothing was "
                      "queued", code="duplicate_image")  # fmt: skip
    for position, image_id in enumerate(body.image_ids):
        try:
            _image(db, image_id, "image", user)
        except AppError as error:
            detail = f"{error.detail} (image_ids[{position}]); nothing was queued"
            raise type(error)(detail, code=error.code) from None
    _check_model(request, body.model)
    rows = [_queue_segmentation(db, image_id, body, user) for image_id in body.image_ids]
    db.commit()
    return SegmentationBatchOut(items=[segmentation_out(row) for row in rows], total=len(rows))


@router.get(
    "/segmentations",
    response_model=Page[SegmentationOut],
    responses=error_responses(*CALLER_STATUSES, 422),
)
def list_segmentations(
    user: ResearcherDep,
    db: SessionDep,
    page: PageDep,
    image_id: Id | None = Query(None, description="Only the segmentations of this image."),
) -> Page[SegmentationOut]:
    query = select(Segmentation).order_by(Segmentation.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Segmentation.owner_id == user.id)
    if image_id is not None:
        query = query.where(Segmentation.image_id == image_id)
    return Page[SegmentationOut].model_validate(paginate(db, query, page, segmentation_out))


@router.get(
    "/segmentations/{segmentation_id}",
    response_model=SegmentationOut,
    responses=error_responses(*CALLER_STATUSES, 404, 422),
)
def get_segmentation(segmentation_id: Id, user: ResearcherDep, db: SessionDep) -> SegmentationOut:
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    return segmentation_out(row)


def _result_file(request: Request, row, name: str, media_type: str) -> FileResponse:
    storage = request.app.state.storage
    path = storage.result_dir(row.job_id) / name
    if not path.is_file():
        raise NotFound(f"{name} is not there yet: the job is {row.job.status}", code="not_ready")
    return FileResponse(
        path, media_type=media_type, filename=f"{type(row).__name__.lower()}-{row.id}-{name}"
    )


@router.get(
    "/segmentations/{segmentation_id}/lesions.{fmt}",
    response_class=FileResponse,
    responses={
        200: {"description": "The lesion table with the segmentation's settings (JSON), or its "
              "rows (CSV).",
              "content": {"application/json": {"schema": {"type": "object"}},
                          "text/csv": {"schema": {"type": "string"}}}},
        **error_responses(*CALLER_STATUSES, 404, 422),
    },
)  # fmt: skip
def download_lesions(
    segmentation_id: Id,
    request: Request,
    user: ResearcherDep,
    db: SessionDep,
    fmt: str = Path(
        description="json or csv (404 for any other).",
        json_schema_extra={"enum": list(LESION_FORMATS)},
    ),
) -> FileResponse:
    """The lesion table of a finished segmentation (404 until it is there)."""
    if fmt not in LESION_FORMATS:
        raise NotFound("lesion tables come as lesions.json or lesions.csv")
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    media = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    return _result_file(request, row, f"lesions.{fmt}", media)


@router.get(
    "/segmentations/{segmentation_id}/dicom-seg",
    response_class=FileResponse,
    responses={
        **file_responses("The label map as a DICOM-SEG object referencing the uploaded series.",
                         "application/dicom", schema=BINARY),
        **error_responses(*CALLER_STATUSES, 404, 422),
    },
)  # fmt: skip
def download_dicom_seg(
    segmentation_id: Id, request: Request, user: ResearcherDep, db: SessionDep
) -> FileResponse:
    """The DICOM-SEG of a finished segmentation of a DICOM upload (404 otherwise)."""
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    if not row.dicom_seg_path:
        raise NotFound("no DICOM-SEG: made only for images uploaded as DICOM")
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
        raise Invalid(
            f"mask {mask.id} has shape {mask.shape} but image {image.id} has {image.shape}"
        )
    types = organ_types()[body.organ]
    if body.tumor_type not in types:
        raise Invalid(f"tumor type {body.tumor_type!r} is not one of {body.organ}'s: {types}")
    if set(body.protect_labels) & set(body.mask_labels):
        raise Invalid("a label cannot be both organ (mask_labels) and protected")
    outside = [
        c
        for c in body.centers or []
        if not all(0 <= v < n for v, n in zip(c, image.shape, strict=True))
    ]
    if outside:
        raise Invalid(f"centre {list(outside[0])} is no voxel of the image of shape {image.shape}")
    return image, mask


@router.post(
    "/syntheses/preview",
    response_class=Response,
    responses={
        **file_responses("The crop around the centres with its tumors: uncompressed NIfTI "
                         "(int16 HU) on the image's grid (its affine places it in the image).",
                         "application/octet-stream", schema=BINARY),
        **error_responses(400, *CALLER_STATUSES, 404, 422),
    },
)  # fmt: skip
async def preview_synthesis(
    body: SynthesisBody, request: Request, user: ResearcherDep, db: SessionDep
) -> Response:
    """Synthesize tumors at ``centers`` into a crop of the image, for the playground's preview
    (a bounded box around the centres: well under a second). Stores nothing. 404: image or
    mask not found; 422: a bad request, or a centre the engine refuses (the detail says why)."""
    if not body.centers:
        raise Invalid("a preview needs `centers`: where the tumors go")
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
        raise Invalid(str(error), code="refused_by_engine") from None
    return Response(
        data, media_type="application/octet-stream", headers={"Cache-Control": "no-store"}
    )


@router.post(
    "/syntheses",
    status_code=202,
    response_model=SynthesisOut,
    responses=error_responses(400, *CALLER_STATUSES, 404, 422),
)
def create_synthesis(body: SynthesisBody, user: ResearcherDep, db: SessionDep) -> SynthesisOut:
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
    # kept with the job's parameters (the row has no columns for them)
    extra = {"protect_labels": list(body.protect_labels)} if body.protect_labels else {}
    extra.update(body.placement())
    row = _queue(db, "synthesize", row, "synthesis_id", extra)
    db.commit()
    return synthesis_out(row)


@router.get(
    "/syntheses",
    response_model=Page[SynthesisOut],
    responses=error_responses(*CALLER_STATUSES, 422),
)
def list_syntheses(user: ResearcherDep, db: SessionDep, page: PageDep) -> Page[SynthesisOut]:
    query = select(Synthesis).order_by(Synthesis.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Synthesis.owner_id == user.id)
    return Page[SynthesisOut].model_validate(paginate(db, query, page, synthesis_out))


@router.get(
    "/syntheses/{synthesis_id}",
    response_model=SynthesisOut,
    responses=error_responses(*CALLER_STATUSES, 404, 422),
)
def get_synthesis(synthesis_id: Id, user: ResearcherDep, db: SessionDep) -> SynthesisOut:
    return synthesis_out(
        _visible(db.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
    )


@router.get(
    "/syntheses/{synthesis_id}/manifest",
    response_class=FileResponse,
    responses={
        **file_responses("The synthesis manifest (every drawn parameter, for replaying it).",
                         "application/json", schema={"type": "object"}),
        **error_responses(*CALLER_STATUSES, 404, 422),
    },
)  # fmt: skip
def download_manifest(
    synthesis_id: Id, request: Request, user: ResearcherDep, db: SessionDep
) -> FileResponse:
    """The manifest of a finished synthesis (404 until it is there)."""
    row = _visible(db.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
    return _result_file(request, row, "manifest.json", "application/json")


@router.get("/models", response_model=ModelListOut, responses=error_responses(*CALLER_STATUSES))
def list_models(request: Request, user: ResearcherDep) -> ModelListOut:
    """The registered segmentation models and whether their file is here; ``can_pull``: whether
    this user may download the others (admins, on the admin page's models panel)."""
    items = [
        ModelOut(
            name=s.entry.name,
            arch=s.entry.arch,
            status=s.status,
            tumors=s.entry.tumors,
            description=s.entry.description,
        )
        for s in registry_models(request.app.state.settings.data_dir)
    ]
    return ModelListOut(items=items, total=len(items), limit=len(items), offset=0,
                        can_pull=user.role == Role.ADMIN, pull_page="/admin#models")  # fmt: skip


@router.get(
    "/synthesis-options",
    response_model=SynthesisOptionsOut,
    responses=error_responses(*CALLER_STATUSES),
)
def synthesis_options(_user: ResearcherDep) -> SynthesisOptionsOut:
    """Organs, their tumor types and the profiles, for building forms."""
    return SynthesisOptionsOut(organs=organ_types(), profiles=list(PROFILES))
