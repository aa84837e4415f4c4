"""A job's place in the queue and its estimated time left: computed here and nowhere else.

- **Queue position** (queued jobs only): 1 + the queued jobs ahead of it in the same queue.
  Workers claim the oldest queued job first (:meth:`app.jobs.worker.Worker.claim`), so "ahead"
  means a smaller id; supervised kinds (training, evaluation) wait in their own queue.
- **Time left of a running job**: elapsed × (1 − progress) / progress, once progress is past
  :data:`MIN_PROGRESS` (before that the first steps, such as loading a model, say little about
  the rest); until then, the typical duration less the time elapsed, when that is known.
- **Time left of a queued job**: the typical duration of its kind × its position.
- **Typical duration** of a kind: the median run time of its last :data:`RECENT_JOBS`
  succeeded jobs (null when none has finished yet: then there is nothing to go on).

Every estimate is rounded to whole seconds, and null where there is nothing to go on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.tables import Job, JobStatus

MIN_PROGRESS = 0.05  # progress after which elapsed time and progress give an estimate
RECENT_JOBS = 10  # finished jobs of a kind that make its typical duration


@dataclass(frozen=True)
class JobTiming:
    """Where a job stands: ``queue_position`` (1 = next; queued jobs only) and
    ``eta_seconds`` (estimated seconds until it finishes; None when unknown or finished)."""

    queue_position: int | None = None
    eta_seconds: int | None = None


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite returns naive datetimes
        return moment.replace(tzinfo=UTC)
    return moment


def _same_queue(kind: str):
    """The condition on ``Job.kind`` of the queue a job of ``kind`` waits in."""
    from app.jobs.worker import SUPERVISED_KINDS  # filled in when the training kinds register

    if kind in SUPERVISED_KINDS:
        return Job.kind.in_(SUPERVISED_KINDS)
    return Job.kind.not_in(SUPERVISED_KINDS) if SUPERVISED_KINDS else True


def queue_position(session: Session, job: Job) -> int | None:
    """1 + the queued jobs ahead of a queued ``job`` in its queue; None for any other job."""
    if job.status != JobStatus.QUEUED:
        return None
    ahead = select(func.count(Job.id)).where(
        Job.status == JobStatus.QUEUED, Job.id < job.id, _same_queue(job.kind)
    )
    return 1 + (session.scalar(ahead) or 0)


def typical_seconds(session: Session, kind: str) -> float | None:
    """The median run time in seconds of the last succeeded jobs of ``kind`` (None: none yet)."""
    rows = session.execute(
        select(Job.started_at, Job.finished_at)
        .where(
            Job.kind == kind,
            Job.status == JobStatus.SUCCEEDED,
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
        .order_by(Job.finished_at.desc())
        .limit(RECENT_JOBS)
    ).all()
    durations = [(_aware(finished) - _aware(started)).total_seconds() for started, finished in rows]
    durations = [seconds for seconds in durations if seconds >= 0]
    return statistics.median(durations) if durations else None


def running_eta(progress: float, elapsed_s: float, typical_s: float | None = None) -> float | None:
    """Seconds left of a running job that has run ``elapsed_s`` and reached ``progress``.

    Past :data:`MIN_PROGRESS`: elapsed × (1 − progress) / progress. Before: ``typical_s`` less
    the time elapsed (None when that is unknown or already over).
    """
    if progress >= 1.0:
        return 0.0
    if progress > MIN_PROGRESS:
        return elapsed_s * (1.0 - progress) / progress
    if typical_s is not None and typical_s > elapsed_s:
        return typical_s - elapsed_s
    return None


def job_timing(session: Session | None, job: Job, *, now: datetime | None = None) -> JobTiming:
    """The queue position and time left of ``job`` (no queries for a finished job)."""
    if session is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return JobTiming()
    if job.status == JobStatus.QUEUED:
        position = queue_position(session, job)
        typical = typical_seconds(session, job.kind)
        eta = None if typical is None or position is None else typical * position
        return JobTiming(position, _whole(eta))
    started = _aware(job.started_at)
    if started is None:
        return JobTiming()
    elapsed = max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())
    progress = float(job.progress or 0.0)
    typical = typical_seconds(session, job.kind) if progress <= MIN_PROGRESS else None
    return JobTiming(None, _whole(running_eta(progress, elapsed, typical)))


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, round(seconds))
