"""The JSON view of a job, as every API route and page shows it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import object_session

from app.common import UtcDateTime, iso_utc
from app.db.tables import Job
from app.jobs.eta import job_timing

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobOut(BaseModel):
    """A job: what it is, how far it got, and what it left."""

    id: int
    kind: str = Field(description="e.g. segment, synthesize, study_prepare, train, model_pull.")
    status: JobStatusName
    progress: float = Field(ge=0.0, le=1.0)
    message: str = Field(description="The last progress message.")
    error: str | None = Field(description="Why it failed (status failed).")
    result: dict[str, Any] | None = Field(description="What it produced (status succeeded).")
    attempts: int
    cancel_requested: bool
    created_at: UtcDateTime | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    log: str | None = Field(None, description="The job's log (on a single job only).")
    queue_position: int | None = Field(
        None, ge=1, description="For a queued job: 1 = next in line; null otherwise."
    )
    eta_seconds: int | None = Field(
        None,
        ge=0,
        description="Estimated seconds until the job finishes: a running job's from its "
        "progress and time elapsed, a queued job's from the typical duration of recent jobs "
        "of its kind × its queue position; null when there is nothing to go on.",
    )


def job_json(job: Job, *, with_log: bool = False) -> dict[str, Any]:
    """The JSON of a job (:class:`JobOut`); its queue position and time left are read through
    the job's own session (:func:`app.jobs.eta.job_timing`; none for a detached row)."""
    timing = job_timing(object_session(job), job)
    data = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress, 4),
        "message": job.message,
        "error": job.error,
        "result": job.result,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": iso_utc(job.created_at),
        "started_at": iso_utc(job.started_at),
        "finished_at": iso_utc(job.finished_at),
        "queue_position": timing.queue_position,
        "eta_seconds": timing.eta_seconds,
    }
    if with_log:
        data["log"] = job.log
    return data
