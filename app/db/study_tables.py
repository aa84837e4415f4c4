"""Tables of the Visual Turing Test: studies, arms, cases, readers, readings and answers.

- A **study** belongs to an owner (admin or researcher) and holds the settings readers see.
- It has two **arms**; each arm's truth is ``real`` or ``synthetic`` and its cases either come
  from stored volumes or are synthesized by the worker into healthy volumes.
- A **case** is one volume shown to readers (``role="test"``), an example shown with its
  caption before the test (``role="example"``), or a practice case (``role="practice"``): read
  first, its truth shown after the answer, and left out of every statistic and export. Its blinded copy (``served_path``) is what
  readers download; the stored volumes may be deleted later without losing answers.
- A **reader** is invited by a link whose token is stored only as a SHA-256, with or without an
  account (``user_id``). Their own seeded order is a list of **readings** (a case, and 0 for
  its first showing or 1 for a repeat), each with an opaque per-reader token used in URLs.
- An **answer** is unique per (reader, case, reading): a repeated submission finds it.

Migration ``0002_studies`` creates these tables; ``0004_study_questions`` adds the question
set (``Study.questions``) and the answers' ``comment`` and ``features``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import tables  # noqa: F401  (the users and volumes its foreign keys name)
from app.db.base import Base, utcnow


class StudyStatus:
    DRAFT = "draft"
    PREPARING = "preparing"
    ENCODING = "encoding"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=StudyStatus.DRAFT, index=True)
    status_message: Mapped[str] = mapped_column(String(300), default="")
    positive_class: Mapped[str] = mapped_column(String(16), default="synthetic")
    allow_unsure: Mapped[bool] = mapped_column(Boolean, default=True)
    confidence_scale: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_change: Mapped[bool] = mapped_column(Boolean, default=False)
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    click_synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    design: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    grid: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    questions: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"comment", "features"}
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    arms: Mapped[list[StudyArm]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="StudyArm.position"
    )
    cases: Mapped[list[StudyCase]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="StudyCase.id"
    )
    readers: Mapped[list[StudyReader]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="StudyReader.id"
    )


class StudyArm(Base):
    __tablename__ = "study_arms"
    __table_args__ = (UniqueConstraint("study_id", "position", name="uq_study_arms_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    truth: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="volumes")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    study: Mapped[Study] = relationship(back_populates="arms")


class StudyCase(Base):
    __tablename__ = "study_cases"
    __table_args__ = (UniqueConstraint("example_token", name="uq_study_cases_example_token"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    arm_id: Mapped[int] = mapped_column(ForeignKey("study_arms.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="test")
    caption: Mapped[str] = mapped_column(String(200), default="")
    example_token: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    image_id: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"))
    source_image_id: Mapped[int | None] = mapped_column(
        ForeignKey("volumes.id", ondelete="SET NULL")
    )
    mask_id: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    centre_mm: Mapped[list[Any] | None] = mapped_column(JSON)
    served_path: Mapped[str | None] = mapped_column(String(300))
    served_bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    study: Mapped[Study] = relationship(back_populates="cases")
    arm: Mapped[StudyArm] = relationship()


class StudyReader(Base):
    __tablename__ = "study_readers"
    __table_args__ = (
        UniqueConstraint("study_id", "label", name="uq_study_readers_label"),
        UniqueConstraint("token_hash", name="uq_study_readers_token_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64))
    order_seed: Mapped[int] = mapped_column(Integer)
    experience_years: Mapped[int | None] = mapped_column(Integer)
    specialty: Mapped[str | None] = mapped_column(String(100))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    invited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    profile_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship(back_populates="readers")
    readings: Mapped[list[StudyReading]] = relationship(
        back_populates="reader", cascade="all, delete-orphan", order_by="StudyReading.position"
    )


class StudyReading(Base):
    """One slot of a reader's order: which case, first showing (0) or repeat (1)."""

    __tablename__ = "study_readings"
    __table_args__ = (
        UniqueConstraint("reader_id", "position", name="uq_study_readings_position"),
        UniqueConstraint("reader_id", "case_id", "reading", name="uq_study_readings_case"),
        UniqueConstraint("token", name="uq_study_readings_token"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("study_readers.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("study_cases.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    reading: Mapped[int] = mapped_column(Integer, default=0)
    token: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    reader: Mapped[StudyReader] = relationship(back_populates="readings")
    case: Mapped[StudyCase] = relationship()


class StudyAnswer(Base):
    """A reader's answer on one reading; unique per (reader, case, reading)."""

    __tablename__ = "study_answers"
    __table_args__ = (
        UniqueConstraint("reader_id", "case_id", "reading", name="uq_study_answers_reading"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("study_readers.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(
        ForeignKey("study_cases.id", ondelete="CASCADE"), index=True
    )
    reading: Mapped[int] = mapped_column(Integer, default=0)
    answer: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[int | None] = mapped_column(Integer)
    click: Mapped[list[Any] | None] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)
    features: Mapped[list[Any] | None] = mapped_column(JSON)
    time_ms: Mapped[int] = mapped_column(Integer, default=0)
    changes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
