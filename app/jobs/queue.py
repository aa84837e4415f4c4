"""The one way to make a job row: :func:`enqueue`.

A job is queued by adding its row (status ``queued``) in the caller's transaction; the worker
(:mod:`app.jobs.worker`) or, for ``train`` and ``evaluate``, the training supervisor picks it up
once the transaction commits. Every kind's parameters are plain JSON, stored as given, so a
re-run starts from exactly the same request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.db.tables import Job, JobStatus


def enqueue(
    session: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    owner_id: int | None,
    message: str = "queued",
) -> Job:
    """Add a queued job of ``kind`` with ``params`` to ``session`` and flush it (so it has an
    id); the caller commits.

    Args:
        session: the caller's session; the job is visible to workers once it commits.
        kind: a registered job kind (``segment``, ``synthesize``, ``study_prepare``, ``train``…).
        params: the job's JSON parameters.
        owner_id: the user the job runs for (None for system jobs).
        message: the first progress message shown.

    Returns:
        The new job row.
    """
    job = Job(
        kind=kind,
        owner_id=owner_id,
        params=dict(params or {}),
        status=JobStatus.QUEUED,
        progress=0.0,
        message=message,
    )
    session.add(job)
    session.flush()
    return job
