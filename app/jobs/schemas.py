"""The JSON view of a job, as every API route and page shows it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.common import UtcDateTime, iso_utc
from app.db.tables import Job

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


def job_json(job: Job, *, with_log: bool = False) -> dict[str, Any]:
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
    }
    if with_log:
        data["log"] = job.log
    return data
