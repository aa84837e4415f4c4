"""``/api/v1/admin``: launch, watch, stop and re-run training and evaluation jobs (admins only).

Creating a job checks its configuration (the core refuses what the training would refuse),
queues it (202) and returns it; the training supervisor (:mod:`app.training.supervisor`,
started in the app's lifespan, :mod:`app.main`) runs it as a child process when its devices are free.
``…/events`` streams its state and new curve points as server-sent events.

Every JSON answer is built through its ``…Out`` model (:mod:`app.training.schemas`); errors are
the :class:`~app.errors.AppError` family.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.common import Count, Id, Page, PageDep, paginate
from app.db.tables import FINISHED_STATUSES, Job, JobStatus, User
from app.db.training_tables import TrainingRun
from app.deps import AdminDep, SessionDep
from app.errors import Conflict, Invalid, NotFound, error_responses, json_error_responses
from app.jobs.queue import enqueue
from app.jobs.schemas import JobOut, job_json
from app.jobs.worker import request_cancel
from app.registry import pull_jobs as model_pulls
from app.registry.catalog import (
    STATUS_LOCAL,
    STATUS_REMOTE,
    ModelRegistryError,
    check_model_name,
    find_entry,
    finest_grid_mm,
    list_models,
    resolve_model,
)
from app.training import devices as training_devices
from app.training import specs as training_specs
from app.training import views as training_views
from app.training.gpu import describe_devices, query_gpus
from app.training.schemas import (
    AdminJobOut,
    DevicesOut,
    EvaluationJobCreate,
    EvaluationOut,
    ModelListOut,
    PointsOut,
    TrainingJobCreate,
)
from syntumor_core.errors import SynTumorError

EVENT_POLL_S = 0.5


router = APIRouter(prefix="/admin", tags=["admin"])
# An admin (401 not logged in, 403 another role or no CSRF header, 429 too many wrong tokens),
# with parameters that validate (422); 400 for a JSON body that cannot be parsed at all.
ADMIN_ERRORS = (401, 403, 429)


def _errors(*statuses: int, json_only: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route; ``json_only`` for a route whose own answer is not JSON."""
    describe = json_error_responses if json_only else error_responses
    return describe(*sorted({*ADMIN_ERRORS, *statuses}))


# One server-sent event (OpenAPI 3.2's reading of a text/event-stream schema: each event).
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["state", "points", "end"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "state and end: the job (AdminJobOut); points: "
            '{"points": [PointOut, …]}.',
        },
        "id": {"type": "string", "description": "points: the last point's id (Last-Event-ID)."},
        "retry": {"type": "integer"},
    },
}


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


def _admin_job(db: Session, job_id: Id) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.kind not in training_specs.ADMIN_KINDS:
        raise NotFound(f"job {job_id} is not a training or evaluation job")
    return job


def _admin_out(db: Session, job: Job, **options) -> AdminJobOut:
    data = training_views.admin_job_json(db, job, query_gpus(), **options)
    return AdminJobOut.model_validate(data)


def _queue(db: Session, kind: str, params: dict, user: User, request: Request) -> AdminJobOut:
    job = enqueue(db, kind, params, owner_id=user.id)
    run_dir = request.app.state.storage.result_dir(job.id)
    db.add(TrainingRun(job_id=job.id, kind=kind, run_dir=str(run_dir), devices=[]))
    db.commit()
    return _admin_out(db, job)


def _check_gpus(wanted: int) -> None:
    available = len(query_gpus())
    if wanted > available:
        found = f"{available} GPU(s)" if available else "no GPU (nvidia-smi finds none)"
        raise Invalid(f"gpus: asked for {wanted} but this machine has {found}; use 0 for the CPU")


def _check_training(db: Session, params: dict, request: Request) -> None:
    dataset = params["dataset"]
    data_dir = request.app.state.settings.data_dir
    try:
        if params.get("model_name"):
            check_model_name(params["model_name"])
            if params["model_name"] in {s.entry.name for s in list_models(data_dir)}:
                raise Conflict(f"model_name: a model {params['model_name']!r} exists")
        if dataset["source"] == "volumes":
            training_specs.check_volume_pairs(
                db, dataset["train_labels"] + dataset["val_labels"],
                spacing_mm=params["spacing_mm"], max_voxels=request.app.state.settings.max_voxels,
            )  # fmt: skip
        elif dataset["source"] == "decathlon":
            training_specs.read_decathlon(dataset["path"], dataset.get("root"), "training")
        training_specs.training_config(params, "unused")
    except SynTumorError as error:
        raise Invalid(str(error)) from None


# Admin jobs answer without the keys a serialiser leaves out (a list's jobs have no log tail).
JOB_ROUTE = {"response_model": AdminJobOut, "response_model_exclude_unset": True}


@router.post("/training-jobs", status_code=202, **JOB_ROUTE, responses=_errors(400, 409, 422))
def create_training_job(
    body: TrainingJobCreate, request: Request, user: AdminDep, db: SessionDep
) -> AdminJobOut:
    """Queue a training run; its checkpoint becomes a model when it finishes.

    422 for a configuration the training would refuse (or more GPUs than the machine has),
    409 for a ``model_name`` already registered.
    """
    params = body.model_dump(mode="json")
    _check_gpus(body.gpus)
    _check_training(db, params, request)
    return _queue(db, "train", params, user, request)


@router.get("/models", response_model=ModelListOut, responses=_errors())
def list_registered_models(request: Request, user: AdminDep, db: SessionDep) -> ModelListOut:
    """Every registered model, whether it is here, and its download job if one is under way."""
    items = []
    for status in list_models(request.app.state.settings.data_dir):
        pulling = model_pulls.running_pull(db, status.entry.name)
        items.append({"name": status.entry.name, "arch": status.entry.arch,
                      "tumors": status.entry.tumors, "pretrained": status.entry.pretrained,
                      "status": status.status, "url": status.entry.url,
                      "pull_job": job_json(pulling) if pulling else None})  # fmt: skip
    return ModelListOut.model_validate({"items": items, "total": len(items)})


@router.post(
    "/models/{name}/pull", status_code=202, response_model=JobOut,
    responses=_errors(404, 409, 422),
)  # fmt: skip
def pull_model(name: str, request: Request, user: AdminDep, db: SessionDep) -> JobOut:
    """Queue the download of a registered model (or answer the one already under way).

    404 for a name that is not registered, 409 for a model already here, 422 for one without
    a download link.
    """
    data_dir = request.app.state.settings.data_dir
    statuses = {s.entry.name: s for s in list_models(data_dir)}
    try:
        entry = find_entry(name, {n: s.entry for n, s in statuses.items()}, paths_allowed=False)
    except ModelRegistryError as error:
        raise NotFound(str(error)) from None
    status = statuses[entry.name]
    if status.status == STATUS_LOCAL:
        raise Conflict(f"model {name!r} is already here")
    if status.status != STATUS_REMOTE:
        raise Invalid(f"model {name!r} has no download link recorded")
    job = model_pulls.running_pull(db, name)
    if job is None:
        job = enqueue(db, model_pulls.KIND, {"model": name}, owner_id=user.id)
        db.commit()
    return JobOut.model_validate(job_json(job))


@router.post("/evaluation-jobs", status_code=202, **JOB_ROUTE, responses=_errors(400, 422))
def create_evaluation_job(
    body: EvaluationJobCreate, request: Request, user: AdminDep, db: SessionDep
) -> AdminJobOut:
    """Queue the scoring of a registered model on a data set (422 for an unknown model, data
    the evaluation would refuse, or a GPU the machine does not have)."""
    params = body.model_dump(mode="json")
    _check_gpus(body.gpus)
    dataset, settings = params["dataset"], request.app.state.settings
    try:
        resolve_model(body.model, request.app.state.settings.data_dir, allow_path=False)
        if dataset["source"] == "volumes":
            training_specs.check_volume_pairs(
                db, dataset["labels"], spacing_mm=finest_grid_mm(settings.data_dir),
                max_voxels=settings.max_voxels,
            )  # fmt: skip
        elif dataset["source"] == "decathlon":
            training_specs.read_decathlon(dataset["path"], dataset.get("root"), dataset["split"])
    except SynTumorError as error:
        raise Invalid(str(error)) from None
    return _queue(db, "evaluate", params, user, request)


@router.get(
    "/jobs", response_model=Page[AdminJobOut], response_model_exclude_unset=True,
    responses=_errors(422),
)  # fmt: skip
def list_admin_jobs(
    user: AdminDep, db: SessionDep, page: PageDep,
    kind: Literal["train", "evaluate"] | None = Query(None, description="Only jobs of a kind."),
) -> dict:  # fmt: skip
    """Training and evaluation jobs, newest first."""
    query = select(Job).where(Job.kind.in_([kind] if kind else training_specs.ADMIN_KINDS))
    gpus = query_gpus()

    def serialise(job: Job) -> dict:
        return training_views.admin_job_json(db, job, gpus, with_log=False)

    return paginate(db, query.order_by(Job.id.desc()), page, serialise)


@router.get("/jobs/{job_id}", **JOB_ROUTE, responses=_errors(404, 422))
def get_admin_job(job_id: Id, user: AdminDep, db: SessionDep) -> AdminJobOut:
    """A job with its configuration, process, devices, ETA and log tail."""
    return _admin_out(db, _admin_job(db, job_id))


@router.get("/jobs/{job_id}/points", response_model=PointsOut, responses=_errors(404, 422))
def get_points(
    job_id: Id, user: AdminDep, db: SessionDep,
    after: Annotated[Count, Query(description="Only points with a larger id.")] = 0,
) -> PointsOut:  # fmt: skip
    """The curves' points after id ``after`` (training steps thinned to about 2000)."""
    run = training_views.run_for(db, _admin_job(db, job_id).id)
    points = training_views.points_after(db, run.id, after) if run else []
    return PointsOut.model_validate({"items": points, "total": len(points)})


@router.post("/jobs/{job_id}/stop", **JOB_ROUTE, responses=_errors(404, 409, 422))
def stop_job(job_id: Id, user: AdminDep, db: SessionDep) -> AdminJobOut:
    """Stop a job: a queued one at once; a running one's process tree within seconds (409 for
    a job that has finished)."""
    job = _admin_job(db, job_id)
    if job.status in FINISHED_STATUSES:
        raise Conflict(f"job {job_id} has already {job.status}")
    request_cancel(db, job)
    if job.status == JobStatus.RUNNING:
        job.message = "stopping"
    db.commit()
    return _admin_out(db, job)


@router.post("/jobs/{job_id}/rerun", status_code=202, **JOB_ROUTE, responses=_errors(404, 422))
def rerun_job(job_id: Id, request: Request, user: AdminDep, db: SessionDep) -> AdminJobOut:
    """Queue a new job with the same configuration (a taken model name gets the job's id)."""
    job = _admin_job(db, job_id)
    return _queue(db, job.kind, dict(job.params or {}), user, request)


@router.get(
    "/jobs/{job_id}/evaluation", response_model=EvaluationOut, responses=_errors(404, 409, 422)
)
def get_evaluation(job_id: Id, user: AdminDep, db: SessionDep) -> EvaluationOut:
    """An evaluation's results: means, detection per lesion size, per-case scores (404 for a
    training job, 409 for an evaluation without results yet)."""
    job = _admin_job(db, job_id)
    if job.kind != "evaluate":
        raise NotFound(f"job {job_id} is a {job.kind} job, not an evaluation")
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"evaluation {job_id} has no results: it is {job.status}")
    return EvaluationOut.model_validate(
        {"job_id": job.id, "model": (job.params or {}).get("model"), **(job.result or {})}
    )


@router.get("/devices", response_model=DevicesOut, responses=_errors())
def get_devices(user: AdminDep, db: SessionDep) -> DevicesOut:
    """This machine's GPUs (name, memory) and the CPU, with the jobs that hold them."""
    gpus = query_gpus()
    holder, cpu_jobs = training_devices.holders(db)
    items = [{**gpu.as_json(), "job_id": holder.get(gpu.index)} for gpu in gpus]
    cpu = {**describe_devices([], gpus)[0], "job_ids": cpu_jobs,
           "slots": training_devices.CPU_SLOTS}  # fmt: skip
    return DevicesOut.model_validate(
        {"gpus": items, "cpu": cpu, "host": training_devices.this_host()}
    )


def _stream_state(factory, job_id: Id, after: int) -> tuple[dict, list[dict]]:
    with factory() as session:
        job = session.get(Job, job_id)
        state = _admin_out(session, job).model_dump(mode="json", exclude_unset=True)
        run = training_views.run_for(session, job_id)
        points = training_views.points_after(session, run.id, after) if run else []
    return state, points


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "Server-sent events: `state` when the job changes, `points` with "
            "new curve points, `end` when it is done; each with JSON data.",
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
        },
        **_errors(404, 422, json_only=True),
    },
)
async def job_events(
    job_id: Id, request: Request, user: AdminDep, db: SessionDep,
    after: Annotated[Count, Query(description="Only points with a larger id.")] = 0,
    timeout_s: float = Query(3600, gt=0, le=6 * 3600, description="End the stream after."),
    last_event_id: str | None = Header(None, max_length=20),
) -> EventStreamResponse:  # fmt: skip
    """Server-sent events: ``state`` when the job changes, ``points`` with new curve points
    (their ``id`` is the last point's; a reconnect goes on after it), ``end`` when done."""
    _admin_job(db, job_id)
    db.close()
    if last_event_id and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    factory = request.app.state.session_factory

    async def stream():
        last_state, cursor, waited = None, after, 0.0
        yield "retry: 2000\n\n"
        while waited < timeout_s and not await request.is_disconnected():
            state, points = await asyncio.to_thread(_stream_state, factory, job_id, cursor)
            if points:
                cursor = points[-1]["id"]
                yield f"id: {cursor}\nevent: points\ndata: {json.dumps({'points': points})}\n\n"
            comparable = {k: v for k, v in state.items() if k != "eta_seconds"}
            if comparable != last_state:
                last_state = comparable
                yield f"event: state\ndata: {json.dumps(state)}\n\n"
            if state["finished"]:
                yield f"event: end\ndata: {json.dumps(state)}\n\n"
                return
            await asyncio.sleep(EVENT_POLL_S)
            waited += EVENT_POLL_S

    return EventStreamResponse(
        stream(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
