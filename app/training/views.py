"""What the admin API and pages show of a job: its run, devices, curves, ETA and log tail."""

from __future__ import annotations

import math
import shlex
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.tables import FINISHED_STATUSES, Job, JobStatus
from app.db.training_tables import TrainingPoint, TrainingRun
from app.jobs.schemas import job_json
from app.training.gpu import Gpu, describe_devices

MAX_TRAIN_POINTS = 2000
LOG_TAIL_LINES = 80


def run_for(session: Session, job_id: int) -> TrainingRun | None:
    return session.scalar(select(TrainingRun).where(TrainingRun.job_id == job_id))


def point_json(point: TrainingPoint) -> dict[str, Any]:
    return {
        "id": point.id,
        "event": point.event,
        "step": point.step,
        "epoch": point.epoch,
        "loss": point.loss,
        "liver_dice": point.liver_dice,
        "tumor_dice": point.tumor_dice,
        "seconds": point.seconds,
    }


def points_after(session: Session, run_id: int, after: int = 0) -> list[dict[str, Any]]:
    """Points newer than id ``after``; training steps thinned to about 2000 (every k-th step,
    always the newest), validations all."""
    base = select(TrainingPoint).where(TrainingPoint.run_id == run_id, TrainingPoint.id > after)
    count = session.scalar(
        select(func.count()).select_from(
            base.where(TrainingPoint.event == "train").order_by(None).subquery()
        )
    )
    stride = max(1, math.ceil((count or 0) / MAX_TRAIN_POINTS))
    query = base.order_by(TrainingPoint.id)
    if stride > 1:
        newest = session.scalar(
            select(func.max(TrainingPoint.id)).where(TrainingPoint.run_id == run_id)
        )
        query = query.where(
            (TrainingPoint.event != "train")
            | (TrainingPoint.step % stride == 0)
            | (TrainingPoint.id == newest)
        )
    return [point_json(point) for point in session.scalars(query).all()]


def eta_seconds(session: Session, job: Job, run: TrainingRun | None) -> float | None:
    """Seconds left, from the pace so far (training: steps per second; evaluation: progress)."""
    if job.status != JobStatus.RUNNING or run is None:
        return None
    if run.kind == "train":
        rows = session.execute(
            select(TrainingPoint.step, TrainingPoint.seconds)
            .where(TrainingPoint.run_id == run.id, TrainingPoint.event == "train")
            .order_by(TrainingPoint.id.desc())
            .limit(1)
        ).first()
        first = session.execute(
            select(TrainingPoint.step, TrainingPoint.seconds)
            .where(TrainingPoint.run_id == run.id, TrainingPoint.event == "train")
            .order_by(TrainingPoint.id)
            .limit(1)
        ).first()
        if not rows or not first or not run.total_steps or rows[0] <= first[0]:
            return None
        pace = (rows[1] - first[1]) / (rows[0] - first[0])
        return max(0.0, pace * (run.total_steps - rows[0]))
    started = job.started_at
    if started is None or job.progress <= 0.0:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    return max(0.0, elapsed * (1.0 - job.progress) / job.progress)


def log_tail(job: Job, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join((job.log or "").splitlines()[-lines:])


def run_json(run: TrainingRun | None, gpus: list[Gpu]) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "run_dir": run.run_dir,
        "devices": run.devices,
        "device_info": describe_devices(list(run.devices or []), gpus) if run.host else [],
        "host": run.host,
        "pid": run.pid,
        "command": shlex.join(str(part) for part in run.command) if run.command else None,
        "exit_code": run.exit_code,
        "total_steps": run.total_steps,
        "model_name": run.model_name,
        "launched_at": run.launched_at.isoformat() if run.launched_at else None,
    }


def admin_job_json(
    session: Session, job: Job, gpus: list[Gpu], *, with_log: bool = True
) -> dict[str, Any]:
    """A job with its configuration, run, ETA and (optionally) the tail of its log."""
    run = run_for(session, job.id)
    base = job_json(job)
    pace = eta_seconds(session, job, run)  # a training's own pace beats the generic estimate
    data = {
        **base,
        "eta_seconds": round(pace) if pace is not None else base["eta_seconds"],
        "params": job.params,
        "run": run_json(run, gpus),
        "finished": job.status in FINISHED_STATUSES,
    }
    if with_log:
        data["log_tail"] = log_tail(job)
    return data
