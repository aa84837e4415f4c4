"""The worker's part of a study: measure, synthesize matched cases, encode blinded copies.

Three job kinds, chained through the database:

``study_prepare``
    measures every stored case (tumor diameters and the point it is centred on), plans the
    synthetic arm after the real arm's tumor sizes (:func:`plan_matched_cases`) and queues one
    ``study_synthesize`` job per synthetic case (or encodes at once when there is none).
``study_synthesize``
    synthesizes one case with the planned type and count, stores image and label as volumes,
    and, when it was the last case, queues ``study_encode``. Only one job wins that step: the
    study's status moves from ``preparing`` to ``encoding`` with a conditional UPDATE.
``study_encode``
    puts every case on the study's common grid and writes its blinded copy, an uncompressed
    NIfTI of one size and one header for the whole study
    (:mod:`syntumor_core.reader_study.blinding`); the study becomes ``ready``.

:func:`encode_study` and :func:`measure_case` are plain functions, also used by the demo seeder.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db.study_tables import Study, StudyArm, StudyCase, StudyStatus
from app.db.tables import Volume
from app.jobs.queue import enqueue
from app.jobs.worker import JobContext, JobFailed, job_handler
from app.volumes.service import store_core_volume
from app.volumes.storage import Storage
from syntumor_core.errors import SynTumorError

logger = logging.getLogger(__name__)
STUDY_FOLDER = "studies"


def _as_job_failure(error: Exception) -> Exception:
    """Errors of the input become the job's clean failure; anything else stays a crash."""
    if isinstance(error, SynTumorError | JobFailed):
        return JobFailed(str(error))
    return error


def _record_failure(context: JobContext, study_id: int, case_id: int | None, error) -> None:
    """Mark the study (and the case) failed, naming the problem; the owner may prepare again."""
    from app.jobs.worker import JobCancelled

    reason = "cancelled" if isinstance(error, JobCancelled) else str(error) or type(error).__name__
    message = f"case {case_id}: {reason}" if case_id else reason
    with context.session_factory() as session:
        if case_id is not None:
            session.get(StudyCase, case_id).status = "failed"
        study = session.get(Study, study_id)
        study.status = StudyStatus.FAILED
        study.status_message = message[:300]
        session.commit()


def measure_case(storage: Storage, image_path: str, label_path: str | None) -> dict[str, Any]:
    """Tumor diameters (mm, largest first) and the centre (world mm) of a stored case."""
    from syntumor_core.reader_study.design import focus_point_mm, tumor_diameters_mm

    if label_path is None:
        import nibabel as nib

        header = nib.load(storage.absolute(image_path))
        return {"diameters_mm": [], "centre_mm": focus_point_mm(None, header.affine, header.shape)}
    labels = storage.load(label_path, label=True)
    array = np.asarray(labels.array)
    return {
        "diameters_mm": [round(d, 2) for d in tumor_diameters_mm(array, labels.spacing)],
        "centre_mm": focus_point_mm(array, labels.affine),
    }


def _stored_cases(context: JobContext, study_id: int) -> list[dict[str, Any]]:
    """What measuring needs of every case from stored volumes (read in one short session)."""
    with context.session_factory() as session:
        study = session.get(Study, study_id)
        items = []
        for case in (c for c in study.cases if c.source_image_id is None):
            image = session.get(Volume, case.image_id) if case.image_id else None
            if image is None:
                raise JobFailed(f"case {case.id}: its volume was deleted")
            label = session.get(Volume, case.label_id) if case.label_id else None
            items.append({"id": case.id, "role": case.role, "arm": case.arm.position,
                          "image": image.path, "label": label.path if label else None})  # fmt: skip
        return items


def _measure_stored_cases(context: JobContext, study_id: int) -> dict[int, list[list[float]]]:
    """Measure every volume case; returns per arm position the test cases' diameters.

    Each result is written in its own short transaction and progress is reported between
    them: a write held open across a progress report would lock SQLite against itself.
    """
    sizes: dict[int, list[list[float]]] = {}
    items = _stored_cases(context, study_id)
    for index, item in enumerate(items):
        measured = measure_case(context.storage, item["image"], item["label"])
        with context.session_factory() as session:
            case = session.get(StudyCase, item["id"])
            case.plan = {**(case.plan or {}), "diameters_mm": measured["diameters_mm"]}
            case.centre_mm = measured["centre_mm"]
            case.status = "ready"
            session.commit()
        if item["role"] == "test":
            sizes.setdefault(item["arm"], []).append(measured["diameters_mm"])
        context.progress(0.05 + 0.6 * (index + 1) / max(len(items), 1), "measuring cases")
    return sizes


def _plan_arm(study: Study, arm: StudyArm, sizes: dict[int, list[list[float]]]) -> list[dict]:
    from syntumor_core.reader_study.design import plan_matched_cases
    from syntumor_core.synthesis import get_organ_profile

    cases = [c for c in study.cases if c.arm_id == arm.id]
    rng = np.random.default_rng([study.seed, arm.position])
    fixed = arm.settings.get("tumor_type")
    if fixed:
        return [{"tumor_type": fixed, "count": None, "seed": int(rng.integers(0, 2**31 - 1)),
                 "matched": False} for _ in cases]  # fmt: skip
    plans = plan_matched_cases(
        sizes.get(arm.settings["match_arm"], []),
        len(cases),
        get_organ_profile(arm.settings["organ"]),
        rng=rng,
    )
    return [{**dataclasses.asdict(plan), "matched": True} for plan in plans]


@job_handler("study_prepare")
def run_prepare(context: JobContext) -> dict[str, Any]:
    """Measure the stored cases, plan and queue the synthetic ones."""
    study_id = context.params["study_id"]
    context.progress(0.02, "measuring cases", force=True)
    try:
        sizes = _measure_stored_cases(context, study_id)
        with context.session_factory() as session:
            study = session.get(Study, study_id)
            queued = 0
            for arm in study.arms:
                if arm.source != "synthesize":
                    continue
                cases = [c for c in study.cases if c.arm_id == arm.id]
                for case, plan in zip(cases, _plan_arm(study, arm, sizes), strict=True):
                    if case.status == "ready":  # made by an earlier try; plans are deterministic
                        continue
                    job = enqueue(session, "study_synthesize",
                                  {"study_id": study_id, "case_id": case.id},
                                  owner_id=context.owner_id)  # fmt: skip
                    case.plan = {**(case.plan or {}), **plan}
                    case.job_id, case.status = job.id, "synthesizing"
                    queued += 1
            study.status_message = f"synthesizing {queued} case(s)" if queued else "encoding"
            session.commit()
    except Exception as error:
        _record_failure(context, study_id, None, error)
        raise _as_job_failure(error) from None
    with context.session_factory() as session:
        queue_encode_when_done(session, study_id, context.owner_id)
    return {"synthesis_jobs": queued}


def queue_encode_when_done(session: Session, study_id: int, owner_id: int | None) -> bool:
    """Queue ``study_encode`` if no case is left to make; True when this call queued it."""
    pending = session.scalar(
        select(func.count())
        .select_from(StudyCase)
        .where(StudyCase.study_id == study_id, StudyCase.status != "ready")
    )
    if pending:
        return False
    won = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.status == StudyStatus.PREPARING)
        .values(status=StudyStatus.ENCODING, status_message="encoding blinded copies")
    ).rowcount
    if won == 1:
        enqueue(session, "study_encode", {"study_id": study_id}, owner_id=owner_id)
    session.commit()
    return won == 1


def _synthesize_case(context: JobContext, case_id: int) -> dict[str, Any]:
    from syntumor_core import synthesis as engine
    from syntumor_core.reader_study.design import (
        focus_point_mm,
        matched_profile,
        tumor_diameters_mm,
    )
    from syntumor_core.volume import Volume as CoreVolume

    with context.session_factory() as session:
        case = session.get(StudyCase, case_id)
        arm = case.arm
        source = session.get(Volume, case.source_image_id)
        mask_row = session.get(Volume, case.mask_id)
        if source is None or mask_row is None:
            raise JobFailed(f"case {case_id}: its healthy volume or organ mask was deleted")
        plan, settings = dict(case.plan), dict(arm.settings)
        paths = (source.path, mask_row.path)
    image = context.storage.load(paths[0])
    labels = context.storage.load(paths[1], label=True)
    organ_mask = np.isin(np.asarray(labels.array), plan.get("mask_labels") or [1])
    profile = engine.get_organ_profile(settings["organ"])
    if plan.get("count"):
        profile = matched_profile(profile, plan["tumor_type"], int(plan["count"]))
    made = engine.synthesize(
        np.asarray(image.array, dtype=np.float32),
        organ_mask,
        spacing=image.spacing,
        seed=int(plan["seed"]),
        organ=settings["organ"],
        tumor_type=plan["tumor_type"],
        profile=settings["profile"],
        organ_profile=profile,
        axial_axis=image.axial_axis,
    )
    folder = context.storage.result_dir(context.job_id)
    engine.save_manifest(made.manifest, folder / "manifest.json")
    return {
        "image": CoreVolume(made.image, image.affine),
        "label": CoreVolume(made.label, image.affine),
        "diameters_mm": [round(d, 2) for d in tumor_diameters_mm(made.label, image.spacing)],
        "centre_mm": focus_point_mm(made.label, image.affine),
    }


@job_handler("study_synthesize")
def run_case_synthesis(context: JobContext) -> dict[str, Any]:
    """Synthesize one planned case of a study's synthetic arm."""
    study_id, case_id = context.params["study_id"], context.params["case_id"]
    context.progress(0.1, "synthesizing", force=True)
    try:
        made = _synthesize_case(context, case_id)
    except Exception as error:
        _record_failure(context, study_id, case_id, error)
        raise _as_job_failure(error) from None
    context.progress(0.8, "saving", force=True)
    with context.session_factory() as session:
        case = session.get(StudyCase, case_id)
        title = f"Study {study_id} case {case_id}"
        image = store_core_volume(session, context.storage, made["image"], name=title,
                                  source="study", owner_id=context.owner_id,
                                  meta={"study_id": study_id, "synthesis_job": context.job_id})  # fmt: skip
        label = store_core_volume(session, context.storage, made["label"], name=f"{title} – label",
                                  kind="label", source="study", owner_id=context.owner_id,
                                  image_id=image.id, meta={"labels": {"1": "organ", "2": "tumor"}})  # fmt: skip
        case.image_id, case.label_id = image.id, label.id
        case.centre_mm = made["centre_mm"]
        case.plan = {**case.plan, "synthesized_diameters_mm": made["diameters_mm"]}
        case.status = "ready"
        session.commit()
        queue_encode_when_done(session, study_id, context.owner_id)
    return {"image_id": image.id, "label_id": label.id, "diameters_mm": made["diameters_mm"]}


def encode_study(
    session: Session,
    storage: Storage,
    study: Study,
    progress: Callable[[float], None] = lambda fraction: None,
) -> dict[str, Any]:
    """Write every case's blinded copy on the study's common grid; marks the study ready."""
    import nibabel as nib

    from syntumor_core.reader_study.blinding import (
        common_grid,
        encode_case,
        resample_to_grid,
        served_size,
    )

    cases = [case for case in study.cases if case.status == "ready"]
    if len(cases) != len(study.cases):
        raise JobFailed(
            f"{len(study.cases) - len(cases)} case(s) of study {study.id} are not ready"
        )
    images = [session.get(Volume, case.image_id) for case in cases]
    if any(image is None for image in images):
        raise JobFailed("a case's volume was deleted before encoding")
    headers = [nib.load(storage.absolute(image.path)) for image in images]
    design = study.design or {}
    grid = common_grid(
        [(h.shape, h.affine) for h in headers],
        spacing_mm=[design["spacing_mm"]] * 3 if design.get("spacing_mm") else None,
        box_mm=design.get("box_mm"),
    )
    folder = storage.root / STUDY_FOLDER / str(study.id)
    folder.mkdir(parents=True, exist_ok=True)
    size = served_size(grid)
    loaded: tuple[str, object] | None = None  # cases sharing a scan load it once
    pairs = sorted(zip(cases, images, strict=True), key=lambda pair: pair[1].path)
    for index, (case, image) in enumerate(pairs):
        if loaded is None or loaded[0] != image.path:
            loaded = (image.path, storage.load(image.path))
        volume = loaded[1]
        voxels = resample_to_grid(volume.array, volume.affine, grid, case.centre_mm)
        path = folder / f"{secrets.token_hex(16)}.nii"
        path.write_bytes(encode_case(voxels, grid))  # always `size` bytes, one header
        old = case.served_path
        case.served_path, case.served_bytes = storage.relative(path), size
        if old and old != case.served_path:
            storage.remove_unreferenced(old)
        progress(0.9 * (index + 1) / len(cases))
    study.grid = {**grid.to_dict(), "served_bytes": size}
    study.status, study.status_message = StudyStatus.READY, ""
    study.ready_at = datetime.now(UTC)
    session.flush()
    return study.grid


@job_handler("study_encode")
def run_encode(context: JobContext) -> dict[str, Any]:
    """Encode the blinded copies of a study whose cases are all made."""
    study_id = context.params["study_id"]
    context.progress(0.05, "encoding", force=True)
    try:
        with context.session_factory() as session:
            study = session.get(Study, study_id)
            grid = encode_study(session, context.storage, study,
                                lambda f: context.progress(0.05 + 0.9 * f, "encoding"))  # fmt: skip
            session.commit()
    except Exception as error:
        _record_failure(context, study_id, None, error)
        raise _as_job_failure(error) from None
    return grid
