"""Tables of the admin's training and evaluation jobs (they share :class:`app.db.tables.Base`).

A :class:`TrainingRun` is the process side of one ``train`` or ``evaluate`` job: its folder, the
command it runs, the devices it holds, the child's pid and start time (to find it again after a
server restart) and how far its log and metrics files have been read. :class:`TrainingPoint`
rows are the curves: one per logged training step and per validation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import tables  # noqa: F401  (the users and volumes its foreign keys name)
from app.db.base import Base, utcnow


class TrainingRun(Base):
    """The child process of an admin job (``train`` or ``evaluate``)."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # train | evaluate
    run_dir: Mapped[str] = mapped_column(String(500))
    devices: Mapped[list[Any]] = mapped_column(JSON, default=list)  # GPU indices; [] = CPU
    host: Mapped[str | None] = mapped_column(String(255))
    command: Mapped[list[Any] | None] = mapped_column(JSON)
    pid: Mapped[int | None] = mapped_column(Integer)
    process_started: Mapped[float | None] = mapped_column(Float)  # the child's create time
    exit_code: Mapped[int | None] = mapped_column(Integer)
    metrics_offset: Mapped[int] = mapped_column(Integer, default=0)
    log_offset: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    model_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TrainingPoint(Base):
    """One point of a run's curves: a training step (loss) or a validation (Dice)."""

    __tablename__ = "training_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(16))  # train | validation
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    liver_dice: Mapped[float | None] = mapped_column(Float)
    tumor_dice: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
