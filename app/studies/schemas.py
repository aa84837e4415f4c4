"""Request bodies of the reader-study API (owners and readers); the CLI and pages use them too."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from app.db import DbInt, Id
from app.studies import service
from app.studies.service import FEATURES

MAX_COMMENT = 2000


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
    organ: str = "liver"
    profile: str = "paper"
    tumor_type: str | None = Field(None, description="A fixed type instead of size matching.")
    match_arm: int | None = Field(None, ge=0, le=1, description="Arm whose sizes to match.")

    @model_validator(mode="after")
    def _cases_fit_source(self) -> ArmCreate:
        if self.source == "volumes" and (self.healthy or not self.volumes):
            raise ValueError(f"arm {self.name!r}: an arm of stored volumes lists them in `volumes`")
        if self.source == "synthesize" and (self.volumes or not self.healthy):
            raise ValueError(
                f"arm {self.name!r}: a synthesized arm lists healthy volumes in `healthy`"
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
    answer: str = Field(description="real, synthetic or unsure (when the study allows it).")
    confidence: int | None = Field(None, ge=1, le=5, description="1 (a guess) to 5 (certain).")
    click: list[DbInt] | None = Field(
        None, min_length=3, max_length=3, description="Voxel [i, j, k] that looks synthetic."
    )
    comment: str | None = Field(
        None, max_length=MAX_COMMENT, description="Free text (when the study asks for it)."
    )
    features: list[str] | None = Field(
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
