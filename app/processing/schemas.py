"""Request bodies and JSON views of segmentations and syntheses (API, pages and CLI share them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.common import DbInt, Id, OrganName, ProfileName
from app.db.tables import Segmentation, Synthesis
from app.jobs.schemas import JobOut, job_json
from app.registry.catalog import TUMOR_KINDS
from syntumor_core.models import ARCHITECTURES
from syntumor_core.segmentation.options import (
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_MODE,
    DEFAULT_OVERLAP,
)
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES, get_organ_profile

ModeName = Literal["fast", "parity"]
# The registry's rule for a model name (app.registry.catalog.check_model_name); which names are
# registered depends on the server (GET /api/v1/models lists them).
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MODEL_NAME_RULE = (
    "A registered model's name (GET /api/v1/models lists them): 1-64 lower-case letters, "
    "digits, '.', '_' or '-'. Never a path."
)


def organ_types() -> dict[str, list[str]]:
    """Tumor types per organ profile in size order (as the profiles define them), then mix."""
    return {organ: list(get_organ_profile(organ).types) for organ in ORGAN_PROFILES}


def all_tumor_types() -> list[str]:
    """Every organ's tumor types, each once (the organ decides which of them it takes)."""
    return list(dict.fromkeys(t for types in organ_types().values() for t in types))


class LesionFilterBody(BaseModel):
    """Cleaning of the tumor label (``syntumor_core.segmentation.LesionFilter``)."""

    model_config = ConfigDict(extra="forbid")

    min_volume_mm3: float = Field(
        DEFAULT_MIN_LESION_MM3, ge=0.0, le=1e9, description="Drop smaller tumors (1000 = 1 ml)."
    )
    organ_contact: bool = Field(True, description="Keep only tumors inside or touching the liver.")
    tumor_probability: float | None = Field(
        None, gt=0.0, lt=1.0, description="Tumor where its probability is at least this; "
        "null: the plain argmax."
    )  # fmt: skip


class SegmentationOptions(BaseModel):
    """How to segment: the options a single request and a batch share (the core's defaults)."""

    # The name's rule is shown here; the server answers 422 naming the registered models for
    # any other name (a path included).
    model: str = Field(
        "demo", min_length=1, max_length=200, description=MODEL_NAME_RULE,
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    )  # fmt: skip
    mode: ModeName = Field(
        DEFAULT_MODE, description="fast (refined grid) or parity (the original)."
    )
    overlap: float = Field(
        DEFAULT_OVERLAP,
        ge=0.0,
        lt=1.0,
        description=f"Sliding-window overlap: {DEFAULT_OVERLAP} (the default) is the authors' "
        "evaluation setting; 0.5 is about 8x less work, quick on a CPU.",
    )
    lesion_filter: LesionFilterBody = Field(default_factory=LesionFilterBody)

    def job_options(self) -> dict:
        """What the job keeps beside the row's columns (model, mode, overlap)."""
        return {"lesion_filter": self.lesion_filter.model_dump()}


class SegmentationBody(SegmentationOptions):
    """One image to segment, and how."""

    image_id: Id


MAX_BATCH = 100


class SegmentationBatchBody(SegmentationOptions):
    """Several images to segment the same way: each is checked before any is queued."""

    image_ids: list[Id] = Field(
        min_length=1, max_length=MAX_BATCH, description="The images, each once."
    )


VoxelIndex = Annotated[int, Field(ge=0, le=100_000)]


class SynthesisBody(BaseModel):
    image_id: Id
    mask_id: Id
    mask_labels: list[DbInt] = Field(default_factory=lambda: [1], min_length=1, max_length=20)
    organ: OrganName = "liver"
    tumor_type: str = Field(
        "mix", max_length=40, description="One of the organ's tumor types (GET "
        "/api/v1/synthesis-options lists them per organ).",
        json_schema_extra={"enum": all_tumor_types()},
    )  # fmt: skip
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


class LesionFilterOut(BaseModel):
    """The lesion filter a segmentation was asked for (null for requests made before it)."""

    min_volume_mm3: float
    organ_contact: bool
    tumor_probability: float | None = None


class LesionOut(BaseModel):
    """One tumor of a segmentation (``syntumor_core.segmentation.LesionRow``); null for a value
    that is not finite."""

    model_config = ConfigDict(extra="allow")

    index: int = Field(description="Rank by size, 1 = the largest.")
    voxels: int
    volume_ml: float | None
    longest_axial_diameter_mm: float | None
    centroid_voxel: list[float | None] = Field(description="Centre of mass (i, j, k).")
    centroid_mm: list[float | None] = Field(description="The same point in RAS+ mm.")
    mean_hu: float | None


class SegmentationDownloads(BaseModel):
    """Where the outputs are, once there (null until then, or never for dicom_seg)."""

    label: str | None
    lesions_json: str | None
    lesions_csv: str | None
    dicom_seg: str | None = Field(description="Only for images uploaded as DICOM.")


class SegmentationOut(BaseModel):
    """A segmentation request, its job and (when done) its label map and lesions."""

    id: int
    image_id: int
    model: str
    mode: ModeName
    overlap: float
    label_id: int | None = Field(description="The label map made (0 background, 1 liver, 2 tumor).")
    lesions: list[LesionOut] | None
    lesion_filter: LesionFilterOut | None
    job: JobOut
    downloads: SegmentationDownloads


class SegmentationBatchOut(BaseModel):
    """The segmentations a batch queued, one per image in the order given."""

    items: list[SegmentationOut]
    total: int


class SynthesisDownloads(BaseModel):
    image: str | None
    label: str | None
    manifest: str | None


class SynthesisOut(BaseModel):
    """A synthesis request, its job and (when done) the image and label map it made."""

    id: int
    image_id: int
    mask_id: int
    mask_labels: list[int]
    organ: str = Field(json_schema_extra={"enum": list(ORGAN_PROFILES)})
    tumor_type: str
    profile: str = Field(json_schema_extra={"enum": list(PROFILES)})
    seed: int
    protect_labels: list[int]
    centers: list[list[int]] | None
    out_image_id: int | None
    out_label_id: int | None
    job: JobOut
    downloads: SynthesisDownloads


class ModelOut(BaseModel):
    """A registered segmentation model and whether its file is here."""

    name: str
    arch: str = Field(json_schema_extra={"enum": list(ARCHITECTURES)})
    status: Literal["local", "remote", "missing"] = Field(
        description="local: here; remote: downloadable; missing: not here, no link known."
    )
    tumors: str = Field(
        description="What it was trained on.", json_schema_extra={"enum": list(TUMOR_KINDS)}
    )
    description: str


class ModelListOut(BaseModel):
    """The registered models (all on one page) and whether the caller may download others."""

    items: list[ModelOut]
    total: int
    limit: int
    offset: int
    can_pull: bool = Field(description="Whether this user may download models (admins).")
    pull_page: str = Field(description="Where admins download them.")


class SynthesisOptionsOut(BaseModel):
    """What a synthesis form offers."""

    organs: dict[str, list[str]] = Field(description="Organ -> its tumor types.")
    profiles: list[str]


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


def segmentation_out(row: Segmentation) -> SegmentationOut:
    return SegmentationOut.model_validate(segmentation_json(row))


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


def synthesis_out(row: Synthesis) -> SynthesisOut:
    return SynthesisOut.model_validate(synthesis_json(row))
