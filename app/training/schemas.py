"""The admin API's contract: request bodies (a training job, an evaluation job) and the
``…Out`` models of its answers.

A body, once validated, is stored as the job's ``params`` (``model_dump(mode="json")``), so a
re-run starts from exactly the same configuration.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from app.common import ArchName, Id, OrganName, ProfileName, UtcDateTime
from app.jobs.schemas import JobOut
from syntumor_core.models import ARCHITECTURES

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # app.registry.catalog's rule


def _model_name(name: str) -> str:
    from app.registry.catalog import check_model_name
    from syntumor_core.errors import SynTumorError

    try:
        return check_model_name(name)
    except SynTumorError as error:
        raise PydanticCustomError("model_name", str(error)) from None


ModelName = Annotated[
    str, Field(json_schema_extra={"pattern": MODEL_NAME_PATTERN}), AfterValidator(_model_name)
]

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

    model_name: ModelName | None = Field(
        None,
        max_length=64,
        description="Name to register the model as (default trained-<job>): 1-64 lower-case "
        "letters, digits, '.', '_' or '-', starting with a letter or digit.",
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

    model: str = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
        description="A registered model's name (GET /api/v1/admin/models lists them); an "
        "unknown one is refused with 422 naming the closest.",
    )
    dataset: EvaluateData
    gpus: int = Field(0, ge=0, le=1, description="1: on a GPU; 0: on the CPU.")
    overlap: float = Field(0.75, ge=0.0, le=0.95, description="Sliding-window overlap.")
    mode: Literal["fast", "parity"] = "fast"


# --- answers ----------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class DeviceOut(_Out):
    """A device a job runs on: a GPU (name and memory now) or the CPU (index null)."""

    index: int | None = Field(description="CUDA device number; null for the CPU.")
    name: str
    memory_used_mib: int | None
    memory_total_mib: int | None


class RunOut(_Out):
    """The process of a training or evaluation job."""

    id: int
    run_dir: str = Field(description="The job's folder on the server.")
    devices: list[int] = Field(description="GPU indices; [] for the CPU.")
    device_info: list[DeviceOut] = Field(description="Its devices, once launched.")
    host: str | None
    pid: int | None
    command: str | None = Field(description="The command line of the child process.")
    exit_code: int | None
    total_steps: int | None
    model_name: str | None = Field(description="The model it registered (training).")
    launched_at: UtcDateTime | None


class AdminJobOut(JobOut):
    """A training or evaluation job with its configuration, process and log tail; its
    ``eta_seconds`` comes from the run's own pace (steps done per second) once it has one."""

    params: dict[str, Any] = Field(description="The request body it was queued with.")
    run: RunOut | None
    finished: bool
    log_tail: str | None = Field(
        None, description="The last lines of the log (single jobs and events, not lists)."
    )


class PointOut(_Out):
    """A point of the curves: a training step or a validation."""

    id: int = Field(description="Ask for points after this id to go on.")
    event: Literal["train", "validation"]
    step: int
    epoch: int
    loss: float | None
    liver_dice: float | None
    tumor_dice: float | None
    seconds: float | None = Field(description="Seconds since the run started.")


class PointsOut(_Out):
    items: list[PointOut]
    total: int


class GpuOut(DeviceOut):
    index: int
    job_id: int | None = Field(description="The running job that holds it.")


class CpuOut(DeviceOut):
    job_ids: list[int] = Field(description="Running jobs on the CPU.")
    slots: int = Field(description="Jobs the CPU runs at once.")


class DevicesOut(_Out):
    gpus: list[GpuOut]
    cpu: CpuOut
    host: str


class RegisteredModelOut(_Out):
    name: str
    arch: str
    tumors: str = Field(description="real, synthetic, mixed or unknown.")
    pretrained: bool
    status: Literal["local", "remote", "missing"] = Field(
        description="local: here; remote: downloadable (POST …/pull); missing: no link known."
    )
    url: str | None
    pull_job: JobOut | None = Field(description="Its download job, while one is under way.")


class ModelListOut(_Out):
    items: list[RegisteredModelOut]
    total: int


class EvaluationOut(_Out):
    """An evaluation's results: means, detection per lesion size, per-case scores."""

    job_id: int
    model: str | None
    means: dict[str, Any] | None = Field(None, description="Per metric: mean, std, cases.")
    detection: dict[str, Any] | None = Field(
        None, description="Lesion-wise detection, pooled and per size bin."
    )
    size_bins: list[str] | None = Field(None, description="The size bins' labels.")
    checkpoint_selection: dict[str, Any] | None = Field(
        None, description="The data that selected the checkpoint, and its overlap with these."
    )
    checkpoint_sha256: str | None = None
    cases: list[dict[str, Any]] = Field(default_factory=list, description="Per-case scores.")
    case_count: int | None = None
    finished_at: UtcDateTime | None = None
    selection_known: bool | None = Field(
        None, description="Whether the cases that selected the checkpoint are known."
    )
