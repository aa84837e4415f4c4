"""The reader-study API's contract: request bodies (owners and readers; the CLI and pages use
them too) and the ``…Out`` models of every JSON answer, so OpenAPI documents both."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.common import OrganName, ProfileName, UtcDateTime
from app.db import DbInt, Id
from app.errors import ErrorBody
from app.jobs.schemas import JobOut
from app.studies import service
from app.studies.service import FEATURES
from syntumor_core.synthesis import ORGAN_PROFILES, get_organ_profile

MAX_COMMENT = 2000
EXPORTS = ("answers.csv", "mrmc.csv", "mrmc-imrmc.csv", "summary.json")
PLOTS = ("confusion", "roc", "clicks")
ExportName = Literal["answers.csv", "mrmc.csv", "mrmc-imrmc.csv", "summary.json"]
PlotName = Literal["confusion", "roc", "clicks"]
Truth = Literal["real", "synthetic"]
ArmSource = Literal["volumes", "synthesize"]
AnswerName = Literal["real", "synthetic", "unsure"]
StudyStatusName = Literal["draft", "preparing", "encoding", "ready", "failed", "closed"]
TUMOR_TYPES = sorted({name for organ in ORGAN_PROFILES for name in get_organ_profile(organ).types})
TumorTypeName = Literal[tuple(TUMOR_TYPES)]  # type: ignore[valid-type]
Feature = Annotated[str, Field(json_schema_extra={"enum": list(FEATURES)})]


class CaseItem(BaseModel):
    image_id: Id
    label_id: Id | None = Field(None, description="Label map (default: the image's first).")
    caption: str = Field("", max_length=200, description="Shown with an example case.")


class HealthyItem(BaseModel):
    image_id: Id
    mask_id: Id | None = Field(None, description="Organ mask (default: the image's first).")
    mask_labels: list[DbInt] = Field(default_factory=lambda: [1], min_length=1, max_length=20)


class ArmCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    truth: Literal["real", "synthetic"]
    source: Literal["volumes", "synthesize"] = "volumes"
    volumes: list[CaseItem] = Field(default_factory=list, max_length=service.MAX_CASES)
    healthy: list[HealthyItem] = Field(default_factory=list, max_length=service.MAX_CASES)
    organ: OrganName = Field("liver", description="Organ to synthesize into (synthesize arms).")
    profile: ProfileName = Field("paper", description="Synthesis profile (synthesize arms).")
    tumor_type: TumorTypeName | None = Field(
        None,
        description="A fixed type instead of size matching; one of the organ's types: "
        + "; ".join(f"{organ}: {', '.join(get_organ_profile(organ).types)}"
                    for organ in ORGAN_PROFILES) + ".",
    )  # fmt: skip
    match_arm: int | None = Field(None, ge=0, le=1, description="Arm whose sizes to match.")

    @model_validator(mode="after")
    def _cases_fit_source(self) -> ArmCreate:
        """An arm of stored volumes lists ``volumes`` only; a synthesized one ``healthy`` only
        (a 422 naming the arm)."""
        if self.source == "volumes" and (self.healthy or not self.volumes):
            raise PydanticCustomError(
                "arm_cases",
                "arm {name}: an arm of stored volumes lists them in `volumes` (and no `healthy`)",
                {"name": repr(self.name)},
            )
        if self.source == "synthesize" and (self.volumes or not self.healthy):
            raise PydanticCustomError(
                "arm_cases",
                "arm {name}: a synthesized arm lists healthy volumes in `healthy` "
                "(and no `volumes`)",
                {"name": repr(self.name)},
            )
        return self


class ExampleItem(CaseItem):
    arm: int = Field(0, ge=0, le=1, description="Arm the example belongs to.")


class PracticeItem(CaseItem):
    truth: Literal["real", "synthetic"] = Field(
        description="Known truth, shown after the answer; the case joins the arm of that truth."
    )


class QuestionSet(BaseModel):
    comment: bool = Field(False, description="Ask for an optional free-text comment per case.")
    features: bool = Field(
        False,
        description="Ask which features gave a case away: " + ", ".join(service.FEATURES) + ".",
    )


class StudyCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    instructions: str = Field("", max_length=10000)
    positive_class: Literal["synthetic", "real"] = "synthetic"
    allow_unsure: bool = True
    confidence_scale: bool = True
    allow_change: bool = False
    repeats: int = Field(0, ge=0, le=100, description="Cases shown twice (intra-reader kappa).")
    click_synthetic: bool = Field(False, description="Ask where a case looks synthetic.")
    box_mm: float | None = Field(None, ge=16, le=600, description="Largest field of view shown.")
    spacing_mm: float | None = Field(None, ge=0.3, le=10, description="Voxel size shown.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed of the synthesis plan.")
    arms: list[ArmCreate] = Field(min_length=2, max_length=2)
    examples: list[ExampleItem] = Field(default_factory=list, max_length=20)
    practice: list[PracticeItem] = Field(
        default_factory=list,
        max_length=20,
        description="Practice cases: read first, truth shown after each answer, never counted.",
    )
    questions: QuestionSet = Field(default_factory=QuestionSet)
    acknowledge: list[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,60}$")]] = Field(
        default_factory=list,
        max_length=50,
        description="Codes of the design warnings the owner accepts (see POST /studies/checks); "
        "a design with warnings not listed here is refused with 409.",
    )
    prepare: bool = Field(True, description="Queue the preparation job at once.")


class ReaderCreate(BaseModel):
    label: str = Field(min_length=1, max_length=100, description="e.g. 'Reader 1 (senior)'.")
    username: str | None = Field(None, description="Bind the invitation to an existing account.")


class ProfileBody(BaseModel):
    experience_years: int = Field(ge=0, le=70, description="Years reading CT.")
    specialty: str = Field(min_length=1, max_length=100, description="e.g. abdominal radiology.")


class AnswerBody(BaseModel):
    answer: AnswerName = Field(description="real, synthetic or unsure (when the study allows it).")
    confidence: int | None = Field(None, ge=1, le=5, description="1 (a guess) to 5 (certain).")
    click: list[DbInt] | None = Field(
        None, min_length=3, max_length=3, description="Voxel [i, j, k] that looks synthetic."
    )
    comment: str | None = Field(
        None, max_length=MAX_COMMENT, description="Free text (when the study asks for it)."
    )
    features: list[Feature] | None = Field(
        None,
        max_length=len(FEATURES),
        description="What gave the case away (when the study asks): " + ", ".join(FEATURES) + ".",
    )
    time_ms: int = Field(0, ge=0, le=24 * 3600 * 1000, description="Time spent on the case.")

    @field_validator("features")
    @classmethod
    def _known_features(cls, features: list[str] | None) -> list[str] | None:
        if features is None:
            return None
        unknown = [name for name in features if name not in FEATURES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a feature; choose from {', '.join(FEATURES)}")
        return [name for name in FEATURES if name in features]  # one order, no repeats

    @field_validator("comment")
    @classmethod
    def _blank_is_none(cls, comment: str | None) -> str | None:
        return comment.strip() or None if comment is not None else None


# --- answers: the owner's side ---------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), populate_by_name=True)


class QuestionsOut(_Out):
    comment: bool = Field(description="Readers are asked for an optional comment per case.")
    features: bool = Field(description="Readers are asked which features gave a case away.")


class StudySettingsOut(_Out):
    positive_class: Truth
    allow_unsure: bool
    confidence_scale: bool
    allow_change: bool
    repeats: int = Field(description="Cases shown twice (intra-reader kappa).")
    click_synthetic: bool
    questions: QuestionsOut


class ArmOut(_Out):
    position: int = Field(description="0 or 1.")
    name: str
    truth: Truth
    source: ArmSource
    settings: dict[str, Any] = Field(
        description="A synthesized arm's organ, profile, tumor_type and match_arm ({} else)."
    )
    cases: int = Field(description="Test cases of the arm.")


class StudyUrls(_Out):
    self_: str = Field(alias="self", description="This study in the API.")
    results: str
    page: str = Field(description="The study's web page.")


class ReaderOut(_Out):
    """An invited reader, as the study's owner sees them."""

    id: int
    label: str
    user_id: int | None = Field(description="The account the invitation is bound to, if any.")
    experience_years: int | None
    specialty: str | None
    order_seed: int = Field(description="Seed of the reader's own reading order.")
    revoked: bool = Field(description="The invitation was withdrawn.")
    answered: int = Field(description="Test cases answered.")
    total: int = Field(description="Test readings in the reader's order.")
    invited_at: UtcDateTime | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class CaseOut(_Out):
    """A case of a study with its truth (owners only)."""

    id: int
    arm: str
    truth: Truth
    role: Literal["test", "example", "practice"]
    caption: str
    status: str = Field(description="pending, measured, synthesized, ready or failed.")
    image_id: int | None
    label_id: int | None
    source_image_id: int | None = Field(description="The healthy image of a synthesized case.")
    mask_id: int | None
    job_id: int | None
    plan: dict[str, Any] = Field(description="What preparation measured or synthesized.")
    centre_mm: list[float] | None


class StudyOut(_Out):
    """A study as listed: settings, arms and counts."""

    id: int
    title: str
    description: str
    status: StudyStatusName
    status_message: str
    owner_id: int | None
    settings: StudySettingsOut
    arms: list[ArmOut]
    n_cases: int = Field(description="Test cases.")
    n_practice: int
    n_readers: int
    created_at: UtcDateTime | None
    ready_at: UtcDateTime | None
    urls: StudyUrls


class GridOut(_Out):
    shape: list[int] = Field(description="Voxels per axis of the display grid.")
    spacing_mm: list[float]


class StudyGridOut(GridOut):
    served_bytes: int | None = Field(None, description="The one size of every served case file.")


class StudyDetailOut(StudyOut):
    """Everything about a study, truth included (owner and admins only)."""

    instructions: str
    design: dict[str, Any] = Field(
        description="box_mm, spacing_mm and the design checks recorded at creation."
    )
    grid: StudyGridOut | None = Field(description="The display grid (once prepared).")
    seed: int
    cases: list[CaseOut]
    readers: list[ReaderOut]


class StudyCreatedOut(StudyDetailOut):
    job: JobOut | None = Field(description="The preparation job (null with prepare=false).")


class PrepareOut(_Out):
    study: StudyOut
    job: JobOut


class InvitationOut(_Out):
    reader: ReaderOut
    token: str = Field(description="The reader's token: shown only now.")
    invitation_url: str = Field(description="The link to send the reader.")


class DesignCheckOut(_Out):
    """One finding about a study's design."""

    code: str = Field(description="e.g. arm_sizes_differ; list it in `acknowledge` to accept.")
    level: Literal["info", "warning", "error"]
    message: str
    cue: str | None = Field(description="What the finding may tell a reader about the arms.")


class ArmMadeOfOut(_Out):
    name: str
    truth: Truth
    source: ArmSource
    cases: int
    scans: int = Field(description="Distinct scans behind the cases.")
    origins: dict[str, int] = Field(description="Distinct scans per kind of scan.")
    made_of: str
    spacing_mm: list[list[float]] = Field(description="The distinct voxel sizes of its scans.")
    tumor_sizes: str = Field(description="How its tumor sizes come about.")


class ExpectedGridOut(GridOut):
    spacing_from: str
    box_from: str


class DesignReportOut(_Out):
    """The design checks of a study spec, and whether ``POST /studies`` would accept it."""

    arms: list[ArmMadeOfOut]
    grid: ExpectedGridOut | None = Field(description="null when no common grid fits.")
    checks: list[DesignCheckOut]
    unacknowledged: list[str] = Field(description="Codes of warnings not in `acknowledge`.")
    ok: bool


class DesignRefusedBody(ErrorBody):
    """A design refused: warnings not acknowledged (409); ``checks`` lists every finding."""

    checks: list[DesignCheckOut]


class StudyInvalidBody(ErrorBody):
    """A study spec refused (422): a field, or a design that cannot be blinded (then with
    its ``checks``)."""

    checks: list[DesignCheckOut] | None = None


class BootstrapOut(_Out):
    replicates: int
    seed: int


class ReaderInfoOut(_Out):
    reader: str
    experience_years: int | None
    specialty: str | None
    order_seed: int
    answers: int
    readings: int
    median_time_s: float | None


class RocOut(_Out):
    reader: str = Field(description="A reader's label, or the pooled readers.")
    auc: float | None
    n_answers: int
    fpr: list[float | None]
    tpr: list[float | None]


class IntervalOut(_Out):
    auc: float | None
    low: float | None
    high: float | None


class ResultsOut(_Out):
    """Per reader and pooled statistics with intervals, agreement, ROC and per-arm rates.

    The statistics' fields are defined in ``definitions``; blocks are null before any answer."""

    study_id: int
    positive_class: Truth
    n_answers: int
    bootstrap: BootstrapOut
    readers: list[ReaderInfoOut]
    definitions: dict[str, str] = Field(description="What every number means.")
    design: dict[str, Any] = Field(description="Arms, settings, blinding and design checks.")
    questions: dict[str, Any] = Field(description="Features and comments readers gave.")
    per_reader: list[dict[str, Any]]
    pooled: dict[str, Any] | None
    unsure_by_truth: dict[str, dict[str, int]] | None = None
    reader_averaged_auc: IntervalOut | None = None
    agreement: dict[str, Any] | None
    roc: list[RocOut]
    arms: dict[str, Any] | None


class SummaryOut(_Out):
    """``summary.json``: the study and its results in one document."""

    study: StudyOut
    results: ResultsOut


# --- answers: the reader's side --------------------------------------------------------------


class ReaderQuestionsOut(_Out):
    comment: bool
    features: list[str] = Field(description="The features to choose from ([] when not asked).")


class ReaderStudyOut(_Out):
    """The study as a reader sees it (blinded: no arm, no truth)."""

    title: str
    description: str
    instructions: str
    answers: list[AnswerName] = Field(description="The answers allowed.")
    confidence_scale: list[int] | None = Field(description="[1, 5], or null when not asked.")
    allow_change: bool
    click_synthetic: bool
    questions: ReaderQuestionsOut
    open: bool


class ReaderSelfOut(_Out):
    label: str
    experience_years: int | None
    specialty: str | None
    profile_done: bool


class ProgressOut(_Out):
    answered: int = Field(description="Test cases answered (practice left out).")
    total: int
    next: str | None = Field(description="Token of the first reading not yet answered.")


class ReadingItemOut(_Out):
    position: int
    token: str
    answered: bool
    practice: bool


class ExampleOut(_Out):
    caption: str
    image_url: str


class ReaderOverviewOut(_Out):
    study: ReaderStudyOut
    reader: ReaderSelfOut
    progress: ProgressOut
    readings: list[ReadingItemOut]
    examples: list[ExampleOut]


class AnswerOut(_Out):
    answer: AnswerName
    confidence: int | None
    click: list[int] | None
    comment: str | None
    features: list[str] | None
    time_ms: int


class CaseViewOut(_Out):
    """One case of the reader's order: the same keys for every test case of every arm."""

    token: str
    position: int = Field(description="Place among the practice cases, or among the test cases.")
    total: int
    practice: bool
    image_url: str
    previous: str | None
    next: str | None
    answer: AnswerOut | None
    can_answer: bool
    truth: Truth | None = Field(
        None,
        description="Practice cases only: the answer key once answered (null before). A test "
        "case's JSON has no `truth` key.",
    )


class AnswerResultOut(_Out):
    answer: AnswerOut
    progress: ProgressOut
    truth: Truth | None = Field(description="A practice case's answer key; null for test cases.")
