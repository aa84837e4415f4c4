"""``/api/v1/jobs``: list, get, cancel, and server-sent progress events."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import deps
from app.common import Id, PageParams, get_or_404, page_params, paginate
from app.db.tables import FINISHED_STATUSES, Job, Role, User
from app.jobs.schemas import job_json
from app.jobs.worker import request_cancel

router = APIRouter(prefix="/jobs", tags=["jobs"])
EVENT_POLL_S = 0.5
KEEP_ALIVE_S = 15.0
ADMIN_ONLY_KINDS = ("train", "evaluate")


def visible_job(db: Session, job_id: Id, user: User) -> Job:
    """The job if the caller may see it: admins all, others their own (404 otherwise)."""
    job = get_or_404(db, Job, job_id, "job")
    if user.role != Role.ADMIN and job.owner_id != user.id:
        raise HTTPException(404, f"job {job_id} not found")
    return job


@router.get("")
def list_jobs(
    status: str | None = None,
    kind: str | None = None,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
    page: PageParams = Depends(page_params),
) -> dict:
    query = select(Job).order_by(Job.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Job.owner_id == user.id)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    return paginate(db, query, page, job_json)


@router.get("/{job_id}")
def get_job(
    job_id: Id,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> dict:
    return job_json(visible_job(db, job_id, user), with_log=True)


@router.post("/{job_id}/cancel")
def cancel_job(
    job_id: Id,
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
) -> dict:
    """Cancel a queued job now; a running one stops at its next progress report."""
    job = visible_job(db, job_id, user)
    if job.status in FINISHED_STATUSES:
        raise HTTPException(409, f"job {job_id} has already {job.status}")
    request_cancel(db, job)
    db.commit()
    return job_json(job)


@router.get("/{job_id}/events")
async def job_events(
    job_id: Id,
    request: Request,
    timeout_s: float = Query(600, gt=0, le=3600),
    user: User = Depends(deps.require_researcher),
    db: Session = Depends(deps.get_db),
):
    """Server-sent events: a ``progress`` event whenever the job changes, ``end`` when done.

    A comment line every 15 s of silence keeps the connection alive; after ``timeout_s`` a
    ``timeout`` event closes the stream (the job goes on; open the stream again to follow it).
    """
    visible_job(db, job_id, user)
    db.close()
    factory = request.app.state.session_factory

    def snapshot() -> dict:
        with factory() as session:
            return job_json(session.get(Job, job_id))

    async def stream():
        last, waited, quiet = None, 0.0, 0.0
        while waited < timeout_s and not await request.is_disconnected():
            state = await asyncio.to_thread(snapshot)
            if state != last:
                yield f"event: progress\ndata: {json.dumps(state)}\n\n"
                last, quiet = state, 0.0
            elif quiet >= KEEP_ALIVE_S:  # a comment line keeps proxies and clients patient
                yield ": still working\n\n"
                quiet = 0.0
            if state["status"] in FINISHED_STATUSES:
                yield f"event: end\ndata: {json.dumps(state)}\n\n"
                return
            await asyncio.sleep(EVENT_POLL_S)
            waited += EVENT_POLL_S
            quiet += EVENT_POLL_S
        if waited >= timeout_s:  # the job goes on; the client may open the stream again
            yield f"event: timeout\ndata: {json.dumps(last)}\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
