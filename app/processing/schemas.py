"""Request bodies and JSON views of segmentations and syntheses (API, pages and CLI share them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from syntumor_core.postprocess import DEFAULT_MIN_LESION_MM3

from app.common import DbInt, Id, OrganName, ProfileName
from app.db.tables import Segmentation, Synthesis
from app.jobs.schemas import job_json
from syntumor_core.synthesis import ORGAN_PROFILES, get_organ_profile


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
