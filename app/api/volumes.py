"""``/api/v1/volumes``: upload (NIfTI or a DICOM zip), list, get, download, delete.

Uploads are either the raw file as the request body (``?name=ct.nii.gz``; what programs and our
pages send) or a multipart form with a ``file`` field. Both are streamed to disk under the size
limit and validated before anything is registered.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.formparsers import MultiPartParser

from app import auth
from app.api.common import PageParams, get_or_404, page_params, paginate, volume_json
from app.models import Role, User, Volume
from app.services import volumes as volume_service
from app.storage import UploadError, safe_display_name, upload_format

router = APIRouter(prefix="/volumes", tags=["volumes"])
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise HTTPException(400, f"bad Content-Length header {declared!r}") from None
    if size > limit + MULTIPART_OVERHEAD_BYTES:
        raise HTTPException(
            413, f"upload of {size} bytes is larger than the limit of {limit // 2**20} MiB"
        )


async def _limited(stream, limit: int):
    """Pass chunks on until more than ``limit`` bytes arrived (then refuse with 413)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise UploadError(f"upload larger than the limit of {limit // 2**20} MiB", 413)
        yield chunk


async def _multipart_file(request: Request, storage, limit: int):
    """Stream the ``file`` part of a multipart body to a temporary file."""
    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), limit + MULTIPART_OVERHEAD_BYTES),
        max_files=1,
        max_fields=10,
        max_part_size=1024 * 1024,
    )
    form = await parser.parse()  # Starlette spools the file part to disk
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise UploadError("the form has no 'file' field with a file", 400)

    async def chunks():
        while chunk := await upload.read(1024 * 1024):
            yield chunk

    name = upload.filename or "upload"
    upload_format(name)
    try:
        path = await storage.receive(chunks(), ".upload", limit)
    finally:
        await upload.close()
    return path, name, form.get("kind"), form.get("image_id")


@router.post("", status_code=201)
async def upload_volume(
    request: Request,
    name: str | None = Query(None, max_length=255, description="File name (raw-body uploads)."),
    kind: str = Query("image", pattern="^(image|label)$"),
    image_id: int | None = Query(None, description="For a label map: the image it belongs to."),
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
):
    """Upload a CT image or a label map. Same bytes as a stored volume → that volume (200)."""
    storage, settings = request.app.state.storage, request.app.state.settings
    limit = settings.max_upload_bytes
    _check_declared_size(request, limit)
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            temp, name, form_kind, form_image = await _multipart_file(request, storage, limit)
            kind = form_kind or kind
            image_id = int(form_image) if form_image else image_id
        else:
            if not name:
                raise UploadError("give the file name with ?name=… (it tells the format)", 400)
            upload_format(name)
            temp = await storage.receive(request.stream(), ".upload", limit)
        if kind == "label":
            if image_id is None:
                raise UploadError("a label map needs image_id: the image it belongs to", 400)
            image = get_or_404(db, Volume, image_id, "volume")
        display = safe_display_name(name)
        stored = await asyncio.to_thread(storage.store_upload, temp, name, label=kind == "label")
    except UploadError as error:
        raise HTTPException(error.status, str(error)) from None
    if kind == "label" and tuple(stored.shape) != tuple(image.shape):
        existing = volume_service.find_duplicate(db, stored.sha256, "label")
        if existing is None:
            storage.remove_unreferenced(stored.path)
        raise HTTPException(
            422,
            f"label map shape {tuple(stored.shape)} differs from image {image.id}'s "
            f"{tuple(image.shape)}",
        )
    row, created = volume_service.register(
        db, stored, name=display, kind=kind, owner_id=user.id, image_id=image_id
    )
    db.commit()
    body = {**volume_json(row), "duplicate": not created}
    return JSONResponse(body, status_code=201 if created else 200)


@router.get("")
def list_volumes(
    kind: str | None = Query(None, pattern="^(image|label)$"),
    image_id: int | None = None,
    _user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    query = select(Volume).order_by(Volume.id.desc())
    if kind:
        query = query.where(Volume.kind == kind)
    if image_id is not None:
        query = query.where(Volume.image_id == image_id)
    return paginate(db, query, page, volume_json)


@router.get("/{volume_id}")
def get_volume(
    volume_id: int,
    _user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
) -> dict:
    volume = get_or_404(db, Volume, volume_id, "volume")
    labels = db.scalars(select(Volume).where(Volume.image_id == volume.id)).all()
    return {**volume_json(volume), "label_maps": [volume_json(v) for v in labels]}


@router.get("/{volume_id}/file")
def download_volume(
    volume_id: int,
    request: Request,
    _user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
):
    """The volume as NIfTI (``.nii.gz``)."""
    volume = get_or_404(db, Volume, volume_id, "volume")
    path = request.app.state.storage.absolute(volume.path)
    suffix = ".nii.gz" if volume.path.endswith(".gz") else ".nii"
    return FileResponse(path, media_type="application/gzip", filename=f"volume-{volume.id}{suffix}")


@router.delete("/{volume_id}", status_code=204)
def delete_volume(
    volume_id: int,
    request: Request,
    user: User = Depends(auth.require_researcher),
    db: Session = Depends(auth.get_db),
) -> None:
    volume = get_or_404(db, Volume, volume_id, "volume")
    if user.role != Role.ADMIN and volume.owner_id != user.id:
        raise HTTPException(403, "only the owner of a volume or an admin may delete it")
    volume_service.delete(db, request.app.state.storage, volume)
