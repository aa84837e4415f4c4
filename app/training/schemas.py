"""Request bodies of the admin API: a training job and an evaluation job.

A body, once validated, is stored as the job's ``params`` (``model_dump(mode="json")``), so a
re-run starts from exactly the same configuration.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.common import ArchName, Id, OrganName, ProfileName
from syntumor_core.models import ARCHITECTURES

Shape = tuple[
    Annotated[int, Field(ge=16, le=512)],
    Annotated[int, Field(ge=16, le=512)],
    Annotated[int, Field(ge=16, le=512)],
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TrainPhantoms(_Body):
    """Procedural phantoms: organ labels only; tumors come from synthesis."""

    source: Literal["phantoms"]
    phantoms: int = Field(16, ge=1, le=1000, description="Training phantoms.")
    val_phantoms: int = Field(2, ge=0, le=100, description="Validation phantoms (with tumors).")
    phantom_shape: Shape = Field((192, 160, 120), description="Voxels x, y, z.")
    phantom_spacing: float = Field(2.0, ge=0.5, le=10.0, description="Voxel size, mm.")


class TrainVolumes(_Body):
    """Registered volumes: label maps (each belongs to its image), by id."""

    source: Literal["volumes"]
    train_labels: list[Id] = Field(min_length=1, max_length=10_000)
    val_labels: list[Id] = Field(default_factory=list, max_length=10_000)


class Decathlon(_Body):
    """A decathlon JSON on the server (absolute path); its paths start at ``root``."""

    source: Literal["decathlon"]
    path: str = Field(min_length=1, max_length=1000)
    root: str | None = Field(None, max_length=1000)
    split: str = Field("validation", min_length=1, max_length=64)


class EvaluatePhantoms(_Body):
    """Generated phantoms with one synthetic liver tumor each (seeds from 200000)."""

    source: Literal["phantoms"]
    phantoms: int = Field(2, ge=1, le=100)
    phantom_shape: Shape = (96, 80, 48)
    phantom_spacing: float = Field(2.5, ge=0.5, le=10.0)


class EvaluateVolumes(_Body):
    source: Literal["volumes"]
    labels: list[Id] = Field(min_length=1, max_length=10_000)


TrainData = Annotated[TrainPhantoms | TrainVolumes | Decathlon, Field(discriminator="source")]
EvaluateData = Annotated[
    EvaluatePhantoms | EvaluateVolumes | Decathlon, Field(discriminator="source")
]


class TrainingJobCreate(_Body):
    """Everything a training job needs; defaults are the published recipe."""

    model_name: str | None = Field(
        None, max_length=64, description="Name to register the model as (default trained-<job>)."
    )
    arch: ArchName = Field("unet", description=f"One of {', '.join(ARCHITECTURES)}.")
    dataset: TrainData
    syn: bool = Field(True, description="Synthesize tumors on the fly.")
    syn_organ: OrganName = "liver"
    syn_profile: ProfileName = "paper"
    syn_prob: float = Field(0.9, ge=0.0, le=1.0)
    syn_types: dict[str, float] | None = Field(
        None, description="Tumor-type weights (default: the organ profile's)."
    )
    epochs: int = Field(4000, ge=1, le=100_000)
    max_steps: int | None = Field(None, ge=1, le=100_000_000)
    warmup_epochs: int = Field(100, ge=0, le=100_000)
    val_every: int = Field(200, ge=0, le=100_000, description="Validate every N epochs (0: end).")
    batch_size: int = Field(2, ge=1, le=64)
    lr: float = Field(4e-4, gt=0.0, le=1.0)
    roi_size: int = Field(96, ge=16, le=256, description="Crop size, voxels per axis.")
    spacing_mm: float = Field(1.0, ge=0.1, le=10.0)
    amp: bool = Field(True, description="Mixed precision (CUDA only).")
    gpus: int = Field(0, ge=0, le=64, description="GPUs (0: the CPU; >1: torchrun).")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    workers: int = Field(4, ge=0, le=64, description="Data-loader processes per GPU/process.")
    threads: int = Field(0, ge=0, le=1024, description="CPU threads per process (0: default).")


class EvaluationJobCreate(_Body):
    """A model scored on a data set."""

    model: str = Field(min_length=1, max_length=200, description="A registered model name.")
    dataset: EvaluateData
    gpus: int = Field(0, ge=0, le=1, description="1: on a GPU; 0: on the CPU.")
    overlap: float = Field(0.75, ge=0.0, le=0.95, description="Sliding-window overlap.")
    mode: Literal["fast", "parity"] = "fast"
