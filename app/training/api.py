"""``/api/v1/admin``: launch, watch, stop and re-run training and evaluation jobs (admins only).

Creating a job checks its configuration (the core refuses what the training would refuse),
queues it (202) and returns it; the training supervisor (:mod:`app.training.supervisor`,
started in the app's lifespan, :mod:`app.main`) runs it as a child process when its devices are free.
``…/events`` streams its state and new curve points as server-sent events.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import deps
from app.common import Count, Id, PageParams, get_or_404, page_params, paginate
from app.db.tables import FINISHED_STATUSES, Job, JobStatus, User
from app.db.training_tables import TrainingRun
from app.jobs.schemas import job_json
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
from app.training.schemas import EvaluationJobCreate, TrainingJobCreate
from syntumor_core.errors import SynTumorError

EVENT_POLL_S = 0.5


router = APIRouter(prefix="/admin", tags=["admin"])
AdminUser = Depends(deps.require_admin)


def _admin_job(db: Session, job_id: Id) -> Job:
    job = get_or_404(db, Job, job_id, "job")
    if job.kind not in training_specs.ADMIN_KINDS:
        raise HTTPException(404, f"job {job_id} is not a training or evaluation job")
    return job


def _queue(db: Session, kind: str, params: dict, user: User, request: Request) -> dict:
    job = Job(kind=kind, owner_id=user.id, params=params, message="queued")
    db.add(job)
    db.flush()
    run_dir = request.app.state.storage.result_dir(job.id)
    db.add(TrainingRun(job_id=job.id, kind=kind, run_dir=str(run_dir), devices=[]))
    db.commit()
    return training_views.admin_job_json(db, job, query_gpus())


def _check_gpus(wanted: int) -> None:
    available = len(query_gpus())
    if wanted > available:
        found = f"{available} GPU(s)" if available else "no GPU (nvidia-smi finds none)"
        raise HTTPException(
            422, f"gpus: asked for {wanted} but this machine has {found}; use 0 for the CPU"
        )


def _check_training(db: Session, params: dict, request: Request) -> None:
    dataset = params["dataset"]
    data_dir = request.app.state.settings.data_dir
    try:
        if params.get("model_name"):
            check_model_name(params["model_name"])
            if params["model_name"] in {s.entry.name for s in list_models(data_dir)}:
                raise HTTPException(409, f"model_name: a model {params['model_name']!r} exists")
        if dataset["source"] == "volumes":
            training_specs.check_volume_pairs(
                db, dataset["train_labels"] + dataset["val_labels"],
                spacing_mm=params["spacing_mm"], max_voxels=request.app.state.settings.max_voxels,
            )  # fmt: skip
        elif dataset["source"] == "decathlon":
            training_specs.read_decathlon(dataset["path"], dataset.get("root"), "training")
        training_specs.training_config(params, "unused")
    except SynTumorError as error:
        raise HTTPException(422, str(error)) from None


@router.post("/training-jobs", status_code=202)
def create_training_job(
    body: TrainingJobCreate, request: Request, user: User = AdminUser,
    db: Session = Depends(deps.get_db),
) -> dict:  # fmt: skip
    """Queue a training run; its checkpoint becomes a model when it finishes."""
    params = body.model_dump(mode="json")
    _check_gpus(body.gpus)
    _check_training(db, params, request)
    return _queue(db, "train", params, user, request)


@router.get("/models")
def list_registered_models(
    request: Request, user: User = AdminUser, db: Session = Depends(deps.get_db)
) -> dict:
    """Every registered model, whether it is here, and its download job if one is under way."""
    items = []
    for status in list_models(request.app.state.settings.data_dir):
        pulling = model_pulls.running_pull(db, status.entry.name)
        items.append({"name": status.entry.name, "arch": status.entry.arch,
                      "tumors": status.entry.tumors, "pretrained": status.entry.pretrained,
                      "status": status.status, "url": status.entry.url,
                      "pull_job": job_json(pulling) if pulling else None})  # fmt: skip
    return {"items": items, "total": len(items)}


@router.post("/models/{name}/pull", status_code=202)
def pull_model(
    name: str, request: Request, user: User = AdminUser, db: Session = Depends(deps.get_db)
) -> dict:
    """Queue the download of a registered model (or answer the one already under way)."""
    data_dir = request.app.state.settings.data_dir
    statuses = {s.entry.name: s for s in list_models(data_dir)}
    try:
        entry = find_entry(name, {n: s.entry for n, s in statuses.items()}, paths_allowed=False)
    except ModelRegistryError as error:
        raise HTTPException(404, str(error)) from None
    status = statuses[entry.name]
    if status.status == STATUS_LOCAL:
        raise HTTPException(409, f"model {name!r} is already here")
    if status.status != STATUS_REMOTE:
        raise HTTPException(422, f"model {name!r} has no download link recorded")
    job = model_pulls.running_pull(db, name)
    if job is None:
        job = Job(kind=model_pulls.KIND, owner_id=user.id, params={"model": name},
                  message="queued")  # fmt: skip
        db.add(job)
        db.commit()
    return job_json(job)


@router.post("/evaluation-jobs", status_code=202)
def create_evaluation_job(
    body: EvaluationJobCreate, request: Request, user: User = AdminUser,
    db: Session = Depends(deps.get_db),
) -> dict:  # fmt: skip
    """Queue the scoring of a registered model on a data set."""
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
        raise HTTPException(422, str(error)) from None
    return _queue(db, "evaluate", params, user, request)


@router.get("/jobs")
def list_admin_jobs(
    kind: str | None = Query(None, pattern="^(train|evaluate)$"), user: User = AdminUser,
    db: Session = Depends(deps.get_db), page: PageParams = Depends(page_params),
) -> dict:  # fmt: skip
    """Training and evaluation jobs, newest first."""
    query = select(Job).where(Job.kind.in_([kind] if kind else training_specs.ADMIN_KINDS))
    gpus = query_gpus()

    def serialise(job: Job) -> dict:
        return training_views.admin_job_json(db, job, gpus, with_log=False)

    return paginate(db, query.order_by(Job.id.desc()), page, serialise)


@router.get("/jobs/{job_id}")
def get_admin_job(job_id: Id, user: User = AdminUser, db: Session = Depends(deps.get_db)) -> dict:
    """A job with its configuration, process, devices, ETA and log tail."""
    return training_views.admin_job_json(db, _admin_job(db, job_id), query_gpus())


@router.get("/jobs/{job_id}/points")
def get_points(
    job_id: Id, after: Count = 0, user: User = AdminUser,
    db: Session = Depends(deps.get_db),
) -> dict:  # fmt: skip
    """The curves' points after id ``after`` (training steps thinned to about 2000)."""
    run = training_views.run_for(db, _admin_job(db, job_id).id)
    points = training_views.points_after(db, run.id, after) if run else []
    return {"items": points, "total": len(points)}


@router.post("/jobs/{job_id}/stop")
def stop_job(job_id: Id, user: User = AdminUser, db: Session = Depends(deps.get_db)) -> dict:
    """Stop a job: a queued one at once; a running one's process tree within seconds."""
    job = _admin_job(db, job_id)
    if job.status in FINISHED_STATUSES:
        raise HTTPException(409, f"job {job_id} has already {job.status}")
    request_cancel(db, job)
    if job.status == JobStatus.RUNNING:
        job.message = "stopping"
    db.commit()
    return training_views.admin_job_json(db, job, query_gpus())


@router.post("/jobs/{job_id}/rerun", status_code=202)
def rerun_job(
    job_id: Id, request: Request, user: User = AdminUser, db: Session = Depends(deps.get_db)
) -> dict:
    """Queue a new job with the same configuration (a taken model name gets the job's id)."""
    job = _admin_job(db, job_id)
    return _queue(db, job.kind, dict(job.params or {}), user, request)


@router.get("/jobs/{job_id}/evaluation")
def get_evaluation(job_id: Id, user: User = AdminUser, db: Session = Depends(deps.get_db)) -> dict:
    """An evaluation's results: means, detection per lesion size, per-case scores."""
    job = _admin_job(db, job_id)
    if job.kind != "evaluate":
        raise HTTPException(404, f"job {job_id} is a {job.kind} job, not an evaluation")
    if job.status != JobStatus.SUCCEEDED:
        raise HTTPException(409, f"evaluation {job_id} has no results: it is {job.status}")
    return {"job_id": job.id, "model": job.params.get("model"), **(job.result or {})}


@router.get("/devices")
def get_devices(user: User = AdminUser, db: Session = Depends(deps.get_db)) -> dict:
    """This machine's GPUs (name, memory) and the CPU, with the jobs that hold them."""
    gpus = query_gpus()
    holder, cpu_jobs = training_devices.holders(db)
    items = [{**gpu.as_json(), "job_id": holder.get(gpu.index)} for gpu in gpus]
    cpu = {**describe_devices([], gpus)[0], "job_ids": cpu_jobs,
           "slots": training_devices.CPU_SLOTS}  # fmt: skip
    return {"gpus": items, "cpu": cpu, "host": training_devices.this_host()}


def _stream_state(factory, job_id: Id, after: int) -> tuple[dict, list[dict]]:
    with factory() as session:
        job = session.get(Job, job_id)
        state = training_views.admin_job_json(session, job, query_gpus())
        run = training_views.run_for(session, job_id)
        points = training_views.points_after(session, run.id, after) if run else []
    return state, points


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: Id, request: Request, after: Count = 0,
    timeout_s: float = Query(3600, gt=0, le=6 * 3600),
    last_event_id: str | None = Header(None), user: User = AdminUser,
    db: Session = Depends(deps.get_db),
):  # fmt: skip
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
            comparable = {k: v for k, v in state.items() if k != "eta_s"}
            if comparable != last_state:
                last_state = comparable
                yield f"event: state\ndata: {json.dumps(state)}\n\n"
            if state["finished"]:
                yield f"event: end\ndata: {json.dumps(state)}\n\n"
                return
            await asyncio.sleep(EVENT_POLL_S)
            waited += EVENT_POLL_S

    return StreamingResponse(
        stream(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )  # fmt: skip
