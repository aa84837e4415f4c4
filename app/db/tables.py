"""The app's core tables: users, tokens, web sessions, volumes, jobs, segmentations, syntheses.

The reader study's tables are in :mod:`app.db.study_tables`, the training jobs' in
:mod:`app.db.training_tables`; all share :class:`app.db.base.Base`. Schema changes go through
Alembic migrations (``app/db/migrations``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, utcnow
from syntumor_core.segmentation.options import DEFAULT_OVERLAP


class Role(enum.StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    READER = "reader"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.RESEARCHER)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete")


class ApiToken(Base):
    """A token for programs: only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="tokens")


class WebSession(Base):
    """A browser session, kept on the server: the cookie holds only a random token, whose
    SHA-256 is the id here. Logging out deletes the row; a password change or a deactivation
    deletes every row of the user, so no saved cookie works after."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Volume(Base):
    """A stored CT image or label map; the file lives under the data folder, named by hash."""

    __tablename__ = "volumes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="image")  # image | label
    source: Mapped[str] = mapped_column(String(32), default="upload")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(300))  # relative to the data folder
    size_bytes: Mapped[int] = mapped_column(Integer)
    shape: Mapped[list[Any]] = mapped_column(JSON)
    spacing: Mapped[list[Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image_id: Mapped[int | None] = mapped_column(
        ForeignKey("volumes.id", ondelete="CASCADE"), index=True
    )  # for a label map: the image it belongs to
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A unit of work for the worker: kind, parameters, status, progress, log and result."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(300), default="")
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(100))
    pid: Mapped[int | None] = mapped_column(Integer)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Segmentation(Base):
    """A segmentation request: input image, model, and (when done) the label map and lesions."""

    __tablename__ = "segmentations"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16), default="fast")
    overlap: Mapped[float] = mapped_column(Float, default=DEFAULT_OVERLAP)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"))
    lesions: Mapped[list[Any] | None] = mapped_column(JSON)
    dicom_seg_path: Mapped[str | None] = mapped_column(String(300))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship()


class Synthesis(Base):
    """A synthesis request: inputs, parameters, and (when done) the outputs and manifest."""

    __tablename__ = "syntheses"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"))
    mask_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"))
    mask_labels: Mapped[list[Any]] = mapped_column(JSON)
    organ: Mapped[str] = mapped_column(String(32))
    tumor_type: Mapped[str] = mapped_column(String(32))
    profile: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer)
    out_image_id: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"))
    out_label_id: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"))
    manifest_path: Mapped[str | None] = mapped_column(String(300))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship()
