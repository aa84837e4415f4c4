"""HTML pages of the admin area: jobs, the training and evaluation forms, a job's live page.

Every page needs the admin role (others get a 403 page; anonymous visitors go to the login
page). The pages embed the API's JSON for their first paint; their scripts
(``static/js/admin_*.js``) call ``/api/v1/admin/…`` and follow a job's server-sent events.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from app.db import Id
from app.db.tables import Job, Role, Volume
from app.errors import NotFound
from app.registry.catalog import STATUS_LOCAL, list_models
from app.training import devices as training_devices
from app.training import specs as training_specs
from app.training import views as training_views
from app.training.gpu import query_gpus
from app.training.schemas import EvaluatePhantoms, TrainingJobCreate, TrainPhantoms
from app.web import render, require_page_roles
from syntumor_core.models import ARCHITECTURES
from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES, get_organ_profile

router = APIRouter(include_in_schema=False)
JOBS_SHOWN = 100
VOLUME_PAIRS_SHOWN = 1000


def _admin(request: Request):
    return require_page_roles(request, Role.ADMIN)


def _volume_pairs(session) -> list[dict]:
    labels = session.scalars(
        select(Volume)
        .where(Volume.kind == "label", Volume.image_id.is_not(None))
        .order_by(Volume.id.desc())
        .limit(VOLUME_PAIRS_SHOWN)
    ).all()
    pairs = []
    for label in labels:
        image = session.get(Volume, label.image_id)
        if image is not None:
            pairs.append({"label_id": label.id, "label_name": label.name, "image_id": image.id,
                          "image_name": image.name, "shape": image.shape,
                          "spacing_mm": image.spacing,
                          "labels": (label.meta or {}).get("labels")})  # fmt: skip
    return pairs


def _local_models(request: Request) -> list[dict]:
    statuses = list_models(request.app.state.settings.data_dir)
    return [{"name": s.entry.name, "arch": s.entry.arch, "origin": s.entry.origin,
             "tumors": s.entry.tumors, "description": s.entry.description}
            for s in statuses if s.status == STATUS_LOCAL]  # fmt: skip


def _all_models(request: Request) -> list[dict]:
    """Every registered model for the admin home: available ones first, then downloadable."""
    statuses = list_models(request.app.state.settings.data_dir)
    rows = [{"name": s.entry.name, "arch": s.entry.arch, "origin": s.entry.origin,
             "tumors": s.entry.tumors, "status": s.status} for s in statuses]  # fmt: skip
    return sorted(rows, key=lambda row: row["status"] != STATUS_LOCAL)


def _form_options(request: Request) -> dict:
    defaults = TrainingJobCreate(dataset=TrainPhantoms(source="phantoms")).model_dump(mode="json")
    with request.app.state.session_factory() as session:
        pairs = _volume_pairs(session)
    return {
        "archs": list(ARCHITECTURES),
        "organs": {organ: get_organ_profile(organ).type_probabilities for organ in ORGAN_PROFILES},
        "profiles": list(PROFILES),
        "volume_pairs": pairs,
        "models": _local_models(request),
        "gpus": [gpu.as_json() for gpu in query_gpus()],
        "train_defaults": defaults,
        "evaluate_defaults": EvaluatePhantoms(source="phantoms").model_dump(mode="json"),
    }


@router.get("/admin")
def admin_home(request: Request):
    user = _admin(request)
    gpus = query_gpus()
    with request.app.state.session_factory() as session:
        jobs = session.scalars(
            select(Job)
            .where(Job.kind.in_(training_specs.ADMIN_KINDS))
            .order_by(Job.id.desc())
            .limit(JOBS_SHOWN)
        ).all()
        rows = [training_views.admin_job_json(session, job, gpus, with_log=False) for job in jobs]
        holders, cpu_jobs = training_devices.holders(session)
    return render(request, "admin/index.html", user=user, jobs=rows, gpus=gpus, holders=holders,
                  cpu_jobs=cpu_jobs, models=_all_models(request))  # fmt: skip


@router.get("/admin/train")
def train_form(request: Request):
    user = _admin(request)
    return render(request, "admin/train.html", user=user, page_data=_form_options(request))


@router.get("/admin/evaluate")
def evaluate_form(request: Request, model: str | None = None):
    user = _admin(request)
    options = {**_form_options(request), "model": model}
    return render(request, "admin/evaluate.html", user=user, page_data=options)


@router.get("/admin/jobs/{job_id}")
def job_page(request: Request, job_id: Id):
    user = _admin(request)
    with request.app.state.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind not in training_specs.ADMIN_KINDS:
            raise NotFound(f"training or evaluation job {job_id} not found")
        data = training_views.admin_job_json(session, job, query_gpus())
    return render(request, "admin/job.html", user=user, job=data, page_data=data)
