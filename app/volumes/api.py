"""``/api/v1/volumes``: upload (NIfTI or a DICOM zip), list, get, download, delete.

Uploads are either the raw file as the request body (``?name=ct.nii.gz``; what programs and our
pages send) or a multipart form with a ``file`` field. Both are streamed to disk under the size
limit and validated before anything is registered.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.formparsers import MultiPartException, MultiPartParser

from app.common import MAX_DB_INT, Id, Page, PageDep, file_responses, paginate
from app.db.tables import Role, User, Volume
from app.deps import ResearcherDep, SessionDep
from app.errors import (
    CALLER_STATUSES,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    TooLarge,
    error_for_status,
    error_responses,
)
from app.registry.catalog import finest_grid_mm
from app.volumes import service as volume_service
from app.volumes.schemas import (
    VolumeDetailOut,
    VolumeOut,
    VolumeUploadOut,
    volume_json,
    volume_out,
)
from app.volumes.storage import UploadError, safe_display_name, upload_format
from syntumor_core.errors import VolumeError

router = APIRouter(prefix="/volumes", tags=["volumes"])
MULTIPART_OVERHEAD_BYTES = 64 * 1024
VOLUME_KINDS = ("image", "label")
VolumeKind = Literal["image", "label"]
MAX_NAME_LENGTH = 255
# The query travels in the request line, which the server (uvicorn/h11) takes up to 16 KiB with
# the headers; percent-encoded, a character may take 12 bytes: a legend of 1000 characters and
# a name of 255 fit in any encoding (20 000 did not: a longer line was refused with a bare 400).
MAX_LEGEND_LENGTH = 1000
# The upload's body: the file itself, or a multipart form (the route reads the stream itself,
# under the size limit, so the body is described here rather than as a parameter).
UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "The file; its name tells the format."},
                    "kind": {"type": "string", "enum": list(VOLUME_KINDS)},
                    "image_id": {"type": "integer", "minimum": 1, "maximum": MAX_DB_INT},
                },
            },
        },
    },
}  # fmt: skip


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise BadRequest(f"bad Content-Length header {declared!r}") from None
    if size > limit + MULTIPART_OVERHEAD_BYTES:
        raise TooLarge(f"upload of {size} bytes is larger than the limit of {limit // 2**20} MiB")


async def _limited(stream, limit: int):
    """Pass chunks on until more than ``limit`` bytes arrived (then refuse with 413)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise UploadError(f"upload larger than the limit of {limit // 2**20} MiB", 413)
        yield chunk


async def _multipart_file(request: Request, storage, limit: int):
    """Stream the ``file`` part of a multipart body to a temporary file.

    Returns (temporary path, file name, form field ``kind``, form field ``image_id``).
    """
    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), limit + MULTIPART_OVERHEAD_BYTES),
        max_files=1,
        max_fields=10,
        max_part_size=1024 * 1024,
    )
    try:
        form = await parser.parse()  # Starlette spools the file part to a temporary file
    except MultiPartException as error:
        raise UploadError(f"malformed multipart form: {error.message}", 400) from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError("the form has no 'file' field with a file", 400)
        name = upload.filename or ""
        upload_format(name)

        async def chunks():
            while chunk := await upload.read(1024 * 1024):
                yield chunk

        path = await storage.receive(chunks(), ".upload", limit)
    finally:
        await form.close()
    return path, name, form.get("kind"), form.get("image_id")


def _form_kind(value, default: str) -> str:
    if value is None or value == "":
        return default
    if value not in VOLUME_KINDS:
        raise UploadError(f"kind must be 'image' or 'label', got {str(value)[:40]!r}", 422)
    return value


def _form_image_id(value, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        image_id = int(value)
    except (TypeError, ValueError):
        image_id = 0
    if not 1 <= image_id <= MAX_DB_INT:
        raise UploadError(
            f"image_id must be a whole number from 1 to {MAX_DB_INT}, got {str(value)[:40]!r}", 422
        )
    return image_id


def _label_target(
    db: Session, kind: str, image_id: Id | None, user: User
) -> tuple[int, ...] | None:
    """For a label map: the shape of the image it belongs to (checked to exist, to be an image
    and to be the caller's to see)."""
    if kind != "label":
        if image_id is not None:
            raise UploadError("image_id is only for label maps (kind=label)", 422)
        return None
    if image_id is None:
        raise UploadError("a label map needs image_id: the image it belongs to", 400)
    image = volume_service.visible_volume(db, image_id, user)
    if image is None:
        raise UploadError(f"volume {image_id} not found: give the id of a stored image", 404)
    if image.kind != "image":
        raise UploadError(f"volume {image_id} is a label map; a label map belongs to an image", 422)
    return tuple(image.shape)


def _label_meta(db: Session, kind: str, image_id, labels: str | None, derived_from) -> dict:
    """The legend and origin of an uploaded label map (422 naming what is wrong)."""
    if kind != "label" and (labels is not None or derived_from is not None):
        raise Invalid("labels and derived_from are only for label maps (kind=label)")
    try:
        legend = volume_service.parse_legend(labels)
    except VolumeError as error:
        raise Invalid(str(error)) from None
    meta: dict = {"labels": legend} if legend else {}
    if derived_from is not None:
        source = db.get(Volume, derived_from)
        if source is None or source.kind != "label" or source.image_id != image_id:
            raise Invalid(
                f"derived_from must be a label map of image {image_id}; {derived_from} is not"
            )
        meta["derived_from"] = source.id
        if not legend and (source.meta or {}).get("labels"):
            meta["labels"] = source.meta["labels"]  # an edited map keeps its source's legend
    return meta


async def _receive_upload(request: Request, db: Session, name, kind, image_id, user: User):
    """Take the body (raw or multipart) into ``tmp/``; returns (path, name, kind, image_id, shape).

    What can be checked before the body is read (name, kind, the image of a label map) is
    checked first, so a refused upload costs no transfer.
    """
    storage, limit = request.app.state.storage, request.app.state.settings.max_upload_bytes
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        db.commit()  # hand the connection back while the body streams in
        temp, name, form_kind, form_image = await _multipart_file(request, storage, limit)
        try:
            kind = _form_kind(form_kind, kind)
            image_id = _form_image_id(form_image, image_id)
            shape = _label_target(db, kind, image_id, user)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp, name, kind, image_id, shape
    if not name:
        raise UploadError("give the file name with ?name=… (it tells the format)", 400)
    upload_format(name)
    shape = _label_target(db, kind, image_id, user)
    db.commit()  # hand the connection back while the body streams in
    temp = await storage.receive(request.stream(), ".upload", limit)
    return temp, name, kind, image_id, shape


def _check_budget(request: Request, db: Session, stored, name: str) -> None:
    """422 for an image too large once resampled to the finest grid of the models here."""
    settings = request.app.state.settings
    try:
        volume_service.check_upload_budget(
            db, request.app.state.storage, stored, name=name,
            grid_mm=finest_grid_mm(settings.data_dir), max_voxels=settings.max_voxels,
        )  # fmt: skip
    except VolumeError as error:
        raise Invalid(str(error), code="too_many_voxels") from None


def _visible_or_404(db: Session, volume_id: int, user: User) -> Volume:
    volume = volume_service.visible_volume(db, volume_id, user)
    if volume is None:
        raise NotFound(f"volume {volume_id} not found")
    return volume


@router.post(
    "",
    status_code=201,
    response_model=VolumeUploadOut,
    responses={
        200: {"model": VolumeUploadOut,
              "description": "The same bytes were stored already: that volume (duplicate true)."},
        **error_responses(400, *CALLER_STATUSES, 404, 413, 415, 422),
    },
    openapi_extra={"requestBody": UPLOAD_BODY},
)  # fmt: skip
async def upload_volume(
    request: Request,
    response: Response,
    user: ResearcherDep,
    db: SessionDep,
    name: str | None = Query(
        None,
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="The file name, which tells the format (.nii, .nii.gz, .zip): required "
        "for a raw-body upload (400 without it); a multipart upload takes the file part's name.",
    ),
    kind: VolumeKind = Query("image", description="A CT image, or a label map of one."),
    image_id: Id | None = Query(None, description="For a label map: the image it belongs to."),
    labels: str | None = Query(
        None,
        max_length=MAX_LEGEND_LENGTH,
        description='For a label map: its legend as JSON, value → name, e.g. {"1": "liver", '
        '"2": "tumor"}.',
    ),
    derived_from: Id | None = Query(
        None, description="For a label map: the label map of the same image it was edited from."
    ),
) -> VolumeUploadOut:
    """Upload a CT image or a label map. Same bytes as a stored volume → that volume (200).

    The body is the file itself (``?name=ct.nii.gz``) or a multipart form with a ``file`` field
    (and optional ``kind`` and ``image_id`` fields). NIfTI (``.nii``, ``.nii.gz``) or a ``.zip``
    of one DICOM series; label maps are NIfTI on their image's grid.
    """
    _check_declared_size(request, request.app.state.settings.max_upload_bytes)
    storage = request.app.state.storage
    meta = _label_meta(db, kind, image_id, labels, derived_from)
    try:
        temp, name, kind, image_id, shape = await _receive_upload(
            request, db, name, kind, image_id, user
        )
        stored = await asyncio.to_thread(
            storage.store_upload, temp, name, label=kind == "label", expected_shape=shape
        )
    except UploadError as error:
        raise error_for_status(error.status, str(error)) from None
    if kind == "image":
        _check_budget(request, db, stored, safe_display_name(name))
    row, created = volume_service.register_upload(
        db, storage, stored, name=safe_display_name(name), kind=kind, owner_id=user.id,
        image_id=image_id, meta=meta,
    )  # fmt: skip
    if not created:
        response.status_code = 200
    return VolumeUploadOut.model_validate({**volume_json(row), "duplicate": not created})


@router.get("", response_model=Page[VolumeOut], responses=error_responses(*CALLER_STATUSES, 422))
def list_volumes(
    user: ResearcherDep,
    db: SessionDep,
    page: PageDep,
    kind: VolumeKind | None = None,
    image_id: Id | None = Query(None, description="Only the label maps of this image."),
) -> Page[VolumeOut]:
    """The caller's volumes (an admin's: all); a study's cases are seen through the study."""
    query = volume_service.visible(select(Volume).order_by(Volume.id.desc()), user)
    if kind:
        query = query.where(Volume.kind == kind)
    if image_id is not None:
        query = query.where(Volume.image_id == image_id)
    return Page[VolumeOut].model_validate(paginate(db, query, page, volume_out))


@router.get(
    "/{volume_id}",
    response_model=VolumeDetailOut,
    responses=error_responses(*CALLER_STATUSES, 404, 422),
)
def get_volume(volume_id: Id, user: ResearcherDep, db: SessionDep) -> VolumeDetailOut:
    volume = _visible_or_404(db, volume_id, user)
    query = volume_service.visible(select(Volume).where(Volume.image_id == volume.id), user)
    labels = db.scalars(query).all()
    return VolumeDetailOut.model_validate(
        {**volume_json(volume), "label_maps": [volume_json(v) for v in labels]}
    )


@router.get(
    "/{volume_id}/file",
    response_class=FileResponse,
    responses={
        **file_responses(
            "The volume as NIfTI: gzip-compressed (.nii.gz) or plain (.nii).",
            "application/gzip", "application/octet-stream",
            schema={"type": "string", "format": "binary"},
        ),
        **error_responses(*CALLER_STATUSES, 404, 410, 422),
    },
)  # fmt: skip
def download_volume(
    volume_id: Id, request: Request, user: ResearcherDep, db: SessionDep
) -> FileResponse:
    """The volume as NIfTI (``.nii.gz``, or ``.nii`` when it was uploaded uncompressed)."""
    volume = _visible_or_404(db, volume_id, user)
    path = request.app.state.storage.absolute(volume.path)
    if not path.is_file():
        raise Gone(f"the file of volume {volume_id} is missing from the data folder")
    compressed = volume.path.endswith(".gz")
    return FileResponse(
        path,
        media_type="application/gzip" if compressed else "application/octet-stream",
        filename=f"volume-{volume.id}{'.nii.gz' if compressed else '.nii'}",
    )


@router.delete(
    "/{volume_id}", status_code=204, responses=error_responses(*CALLER_STATUSES, 404, 409, 422)
)
def delete_volume(volume_id: Id, request: Request, user: ResearcherDep, db: SessionDep) -> None:
    """Delete a volume with its label maps and the requests that used them (the owner or an
    admin; 409 while a queued or running job uses it)."""
    volume = _visible_or_404(db, volume_id, user)
    if user.role != Role.ADMIN and volume.owner_id != user.id:
        raise Forbidden("only the owner of a volume or an admin may delete it")
    busy = volume_service.busy_jobs(db, volume)
    if busy:
        raise Conflict(
            f"volume {volume_id} is in use by queued or running job(s) "
            f"{', '.join(map(str, busy))}: cancel them or wait until they finish",
            code="volume_in_use",
        )
    volume_service.delete(db, request.app.state.storage, volume)
