"""The JSON view of a stored volume (an image or a label map)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.common import UtcDateTime, iso_utc
from app.db.tables import Volume


class VolumeOut(BaseModel):
    """A stored volume: what it is, its grid, and where to download it."""

    id: int
    name: str
    kind: Literal["image", "label"]
    source: str = Field(description="upload, phantom, sample, synthesis, segmentation, study.")
    sha256: str
    size_bytes: int
    shape: list[int] = Field(description="Voxels per axis (i, j, k).")
    spacing_mm: list[float] = Field(description="Voxel size per axis in mm.")
    image_id: int | None = Field(description="For a label map: the image it belongs to.")
    labels: dict[str, str] | None = Field(description="Label value -> name (label maps).")
    format: str | None = Field(description="How it was uploaded: nifti or dicom.")
    created_at: UtcDateTime
    download_url: str


def volume_json(volume: Volume) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.name,
        "kind": volume.kind,
        "source": volume.source,
        "sha256": volume.sha256,
        "size_bytes": volume.size_bytes,
        "shape": volume.shape,
        "spacing_mm": volume.spacing,
        "image_id": volume.image_id,
        "labels": (volume.meta or {}).get("labels"),
        "format": (volume.meta or {}).get("format"),
        "created_at": iso_utc(volume.created_at),
        "download_url": f"/api/v1/volumes/{volume.id}/file",
    }


class VolumeUploadOut(VolumeOut):
    """An uploaded volume; ``duplicate``: the same bytes were stored already (that volume)."""

    duplicate: bool


class VolumeDetailOut(VolumeOut):
    """A volume with the label maps of it that the caller may see."""

    label_maps: list[VolumeOut]


def volume_out(volume: Volume) -> VolumeOut:
    return VolumeOut.model_validate(volume_json(volume))
