"""``/api/v1/jobs``: list, get, cancel, and server-sent progress events."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.common import Id, Page, PageDep, file_responses, get_or_404, paginate
from app.db.tables import FINISHED_STATUSES, Job, Role, User
from app.deps import ResearcherDep, SessionDep
from app.errors import (
    CALLER_STATUSES,
    Conflict,
    NotFound,
    error_responses,
    json_error_responses,
)
from app.jobs.schemas import JobOut, JobStatusName, job_json
from app.jobs.worker import request_cancel

router = APIRouter(prefix="/jobs", tags=["jobs"])
EVENT_POLL_S = 0.5
KEEP_ALIVE_S = 15.0
ADMIN_ONLY_KINDS = ("train", "evaluate")


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


EVENTS_DOC = (
    "Server-sent events (`text/event-stream`): `progress` and `end` events whose data is the "
    "job as JSON (JobOut), `timeout` after `timeout_s`, and comment lines to keep alive."
)


def visible_job(db: Session, job_id: Id, user: User) -> Job:
    """The job if the caller may see it: admins all, others their own (404 otherwise)."""
    job = get_or_404(db, Job, job_id, "job")
    if user.role != Role.ADMIN and job.owner_id != user.id:
        raise NotFound(f"job {job_id} not found")
    return job


def job_out(job: Job, *, with_log: bool = False) -> JobOut:
    return JobOut.model_validate(job_json(job, with_log=with_log))


@router.get("", response_model=Page[JobOut], responses=error_responses(*CALLER_STATUSES, 422))
def list_jobs(
    user: ResearcherDep,
    db: SessionDep,
    page: PageDep,
    status: JobStatusName | None = None,
    kind: str | None = Query(
        None, max_length=40, description="e.g. segment, synthesize, study_prepare, train."
    ),
) -> Page[JobOut]:
    """The caller's jobs, newest first (an admin's: everyone's)."""
    query = select(Job).order_by(Job.id.desc())
    if user.role != Role.ADMIN:
        query = query.where(Job.owner_id == user.id)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    return Page[JobOut].model_validate(paginate(db, query, page, job_out))


@router.get(
    "/{job_id}", response_model=JobOut, responses=error_responses(*CALLER_STATUSES, 404, 422)
)
def get_job(job_id: Id, user: ResearcherDep, db: SessionDep) -> JobOut:
    """One job, with its log."""
    return job_out(visible_job(db, job_id, user), with_log=True)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses=error_responses(*CALLER_STATUSES, 404, 409, 422),
)
def cancel_job(job_id: Id, user: ResearcherDep, db: SessionDep) -> JobOut:
    """Cancel a queued job now; a running one stops at its next progress report. 409 when it
    has already finished."""
    job = visible_job(db, job_id, user)
    if job.status in FINISHED_STATUSES:
        raise Conflict(f"job {job_id} has already {job.status}", code="job_finished")
    request_cancel(db, job)
    db.commit()
    return job_out(job)


@router.get(
    "/{job_id}/events",
    response_class=EventStream,
    responses={
        **file_responses(EVENTS_DOC, "text/event-stream", schema={"type": "string"}),
        **json_error_responses(*CALLER_STATUSES, 404, 422),
    },
)
async def job_events(
    job_id: Id,
    request: Request,
    user: ResearcherDep,
    db: SessionDep,
    timeout_s: float = Query(600, gt=0, le=3600, description="Close the stream after this."),
) -> EventStream:
    """Server-sent events: a ``progress`` event whenever the job changes, ``end`` when done.

    A comment line every 15 s of silence keeps the connection alive; after ``timeout_s`` a
    ``timeout`` event closes the stream (the job goes on; open the stream again to follow it).
    """
    visible_job(db, job_id, user)
    db.close()
    factory = request.app.state.session_factory

    def snapshot() -> dict:
        with factory() as session:
            return job_out(session.get(Job, job_id)).model_dump(mode="json")

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

    return EventStream(stream(), headers={"Cache-Control": "no-cache"})
