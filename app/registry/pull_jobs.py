"""Admins download a registered model from the web app: a ``model_pull`` job.

The job runs :func:`app.registry.pull.pull_one` in the worker: resumable, verified (strict load,
sha256 of the first download) and installed atomically, exactly as ``syntumor models pull``.
Its progress (bytes received) goes through the job's ordinary progress, so the page follows it
over the job's server-sent events; a cancelled or failed download keeps its bytes for the next
try. ``SYNTUMOR_MODELS_BASE_URL`` (:attr:`app.settings.Settings.models_base_url`) points every
registered link at a mirror.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import Job, JobStatus
from app.jobs.worker import JobContext, JobFailed, job_handler
from syntumor_core.errors import SynTumorError

KIND = "model_pull"
_MB = 1_000_000


def running_pull(db: Session, name: str) -> Job | None:
    """The queued or running download of model ``name``, if any."""
    jobs = db.scalars(
        select(Job).where(Job.kind == KIND, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
    ).all()
    return next((job for job in jobs if (job.params or {}).get("model") == name), None)


def _progress_message(received: int, total: int | None) -> tuple[float, str]:
    if total:
        return received / total, f"{received / _MB:.1f} of {total / _MB:.1f} MB"
    return 0.0, f"{received / _MB:.1f} MB"


@job_handler(KIND)
def run_model_pull(context: JobContext) -> dict[str, Any]:
    """Download, verify and install one registered model."""
    from app.registry.pull import pull_one

    name = str(context.params["model"])
    context.progress(0.0, f"connecting for {name}", force=True)

    def report(received: int, total: int | None) -> None:
        fraction, message = _progress_message(received, total)
        context.progress(0.95 * fraction, message)

    try:
        path = pull_one(name, context.settings.data_dir, report,
                        base_url=context.settings.models_base_url)  # fmt: skip
    except SynTumorError as error:
        raise JobFailed(str(error)) from None
    context.progress(1.0, f"{name} verified and installed", force=True)
    context.log(f"installed {name} at {path}")
    return {"model": name}
