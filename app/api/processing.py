"""``/api/v1/segmentations``, ``/api/v1/syntheses`` and ``/api/v1/models``.

Creating a segmentation or a synthesis queues a job (202); the answer holds the request and its
job, whose progress is at ``/api/v1/jobs/{id}`` and ``…/events``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import auth
from app.api.common import (
    DbInt,
    Id,
    OrganName,
    PageParams,
    ProfileName,
    job_json,
    page_params,
    paginate,
)
from app.model_registry import list_models as registry_models
from app.model_registry import resolve_model
from app.models import Job, Role, Segmentation, Synthesis, User, Volume
from app.services import playground
from app.services import volumes as volume_service
from syntumor_core.errors import SynTumorError
from syntumor_core.postprocess import DEFAULT_MIN_LESION_MM3
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES, get_organ_profile

router = APIRouter(tags=["processing"])


def organ_types() -> dict[str, list[str]]:
    """Tumor types per organ profile in size order (as the profiles define them), then mix."""
    return {organ: list(get_organ_profile(organ).types) for organ in ORGAN_PROFILES}


class LesionFilterBody(BaseModel):
    """Cleaning of the tumor label (``syntumor_core.postprocess.LesionFilter``)."""

    model_config = ConfigDict(extra="forbid")

    min_volume_mm3: float = Field(
        DEFAULT_MIN_LESION_MM3, ge=0.0, le=1e9, description="Drop smaller tumors (1000 = 1 ml)."
    )
    organ_contact: bool = Field(True, description="Keep only tumors inside or touching the liver.")
    tumor_probability: float | None = Field(
        None, gt=0.0, lt=1.0, description="Tumor where its probability is at least this; "
        "null: the plain argmax."
    )  # fmt: skip


class SegmentationBody(BaseModel):
    image_id: Id
    model: str = Field("demo", min_length=1, max_length=200)
    mode: str = Field("fast", pattern="^(fast|parity)$")
    overlap: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Sliding-window overlap: 0.5 is quick on a CPU; 0.75 is the authors' "
        "evaluation setting (about 8x the work).",
    )
    lesion_filter: LesionFilterBody = Field(default_factory=LesionFilterBody)


VoxelIndex = Annotated[int, Field(ge=0, le=100_000)]


class SynthesisBody(BaseModel):
    image_id: Id
    mask_id: Id
    mask_labels: list[DbInt] = Field(default_factory=lambda: [1], min_length=1, max_length=20)
    organ: OrganName = "liver"
    tumor_type: str = "mix"
    profile: ProfileName = "paper"
    seed: int = Field(0, ge=0, le=2**32 - 1)
    protect_labels: list[DbInt] = Field(
        default_factory=list,
        max_length=20,
        description="Label values in the mask never to overlap, move or change (e.g. the "
        "scan's real lesions or vessels).",
    )
    centers: list[tuple[VoxelIndex, VoxelIndex, VoxelIndex]] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="One tumor centred at each of these voxel indices (i, j, k) of the image, "
        "instead of drawn places; refused when outside the organ or too near its edge.",
    )
    radius_mm: float | None = Field(
        None, ge=1.0, le=60.0, description="Every tumor's semi-axes in mm (default: drawn)."
    )
    drop_hu: float | None = Field(
        None, ge=-200.0, le=300.0, description="The tumor's HU drop (default: drawn)."
    )
    texture_mm: float | None = Field(
        None, ge=1.0, le=30.0, description="Texture grain: its coarse smoothing sigma in mm."
    )
    rim: float | None = Field(
        None, ge=0.0, le=0.9, description="Enhancing rim strength (profile realistic)."
    )
    mass_effect: float | None = Field(
        None, ge=0.0, le=0.9, description="Push on the parenchyma around (profile realistic)."
    )

    def placement(self) -> dict:
        """The placement and appearance options given (kept with the job's parameters)."""
        chosen = {"centers": self.centers, "radius_mm": self.radius_mm, "drop_hu": self.drop_hu,
                  "texture_mm": self.texture_mm, "rim": self.rim, "mass_effect": self.mass_effect}  # fmt: skip
        return {key: value for key, value in chosen.items() if value is not None}


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


def segmentation_json(row: Segmentation) -> dict:
    base = f"/api/v1/segmentations/{row.id}"
    done = row.label_id is not None
    return {
        "id": row.id,
        "image_id": row.image_id,
        "model": row.model,
        "mode": row.mode,
        "overlap": row.overlap,
        "label_id": row.label_id,
        "lesions": row.lesions,
        "lesion_filter": (row.job.params or {}).get("lesion_filter") if row.job else None,
        "job": job_json(row.job),
        "downloads": {
            "label": f"/api/v1/volumes/{row.label_id}/file" if done else None,
            "lesions_json": f"{base}/lesions.json" if done else None,
            "lesions_csv": f"{base}/lesions.csv" if done else None,
            "dicom_seg": f"{base}/dicom-seg" if row.dicom_seg_path else None,
        },
    }


def synthesis_json(row: Synthesis) -> dict:
    done = row.out_image_id is not None
    return {
        "id": row.id,
        "image_id": row.image_id,
        "mask_id": row.mask_id,
        "mask_labels": row.mask_labels,
        "organ": row.organ,
        "tumor_type": row.tumor_type,
        "profile": row.profile,
        "seed": row.seed,
        "protect_labels": list((row.job.params or {}).get("protect_labels", [])) if row.job else [],
        "centers": (row.job.params or {}).get("centers") if row.job else None,
        "out_image_id": row.out_image_id,
        "out_label_id": row.out_label_id,
        "job": job_json(row.job),
        "downloads": {
            "image": f"/api/v1/volumes/{row.out_image_id}/file" if done else None,
            "label": f"/api/v1/volumes/{row.out_label_id}/file" if done else None,
            "manifest": f"/api/v1/syntheses/{row.id}/manifest" if row.manifest_path else None,
        },
    }


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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
):
    if fmt not in ("json", "csv"):
        raise HTTPException(404, "lesion tables come as lesions.json or lesions.csv")
    row = _visible(db.get(Segmentation, segmentation_id), user, f"segmentation {segmentation_id}")
    return _result_file(request, row, f"lesions.{fmt}")


@router.get("/segmentations/{segmentation_id}/dicom-seg")
def download_dicom_seg(
    segmentation_id: Id,
    request: Request,
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
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
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    query = select(Synthesis).order_by(Synthesis.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Synthesis.owner_id == user.id)
    return paginate(db, query, page, synthesis_json)


@router.get("/syntheses/{synthesis_id}")
def get_synthesis(
    synthesis_id: Id,
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
) -> dict:
    return synthesis_json(
        _visible(db.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
    )


@router.get("/syntheses/{synthesis_id}/manifest")
def download_manifest(
    synthesis_id: Id,
    request: Request,
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
):
    row = _visible(db.get(Synthesis, synthesis_id), user, f"synthesis {synthesis_id}")
    return _result_file(request, row, "manifest.json")


@router.get("/models")
def list_models(request: Request, user: User = Depends(auth.require_researcher)) -> dict:
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
def synthesis_options(_user: User = Depends(auth.require_researcher)) -> dict:
    """Organs, their tumor types and the profiles, for building forms."""
    return {"organs": organ_types(), "profiles": list(PROFILES)}
