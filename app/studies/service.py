"""Reader studies for their owners: create, prepare, invite readers, describe, delete.

A study is created as a draft from a spec (a plain dict, the API's ``StudyCreate``): settings,
two arms and optional example cases. ``queue_prepare`` hands the heavy work (measuring the
real tumors, synthesizing the matched synthetic arm, encoding blinded copies) to the worker
(:mod:`app.studies.prepare`); the study is ``ready`` when it is done. Readers are
invited with a link holding a token of which only the SHA-256 is stored; each gets an own
seeded order of readings at invitation.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.study_tables import (
    Study,
    StudyAnswer,
    StudyArm,
    StudyCase,
    StudyReader,
    StudyReading,
    StudyStatus,
)
from app.db.tables import Job, Role, User, Volume
from app.jobs.queue import enqueue
from app.studies.errors import StudyError  # noqa: F401  (raised by the service's callers too)
from app.volumes.storage import Storage

READER_TOKEN_PREFIX = "rd_"
MAX_CASES = 500
TRUTHS = ("real", "synthetic")
ARM_SOURCES = ("volumes", "synthesize")
FEATURES = ("texture", "margin", "shape", "enhancement", "location", "other")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_reader_token() -> str:
    return READER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_case_token() -> str:
    """An opaque per-reader case id for URLs: 24 URL-safe characters (144 random bits)."""
    return secrets.token_urlsafe(18)


# --- lookups ----------------------------------------------------------------------------------


def visible_study(session: Session, study_id: int, user: User) -> Study:
    """The study if ``user`` owns it or is an admin; 404 otherwise (no existence oracle)."""
    study = session.get(Study, study_id)
    if study is None or (user.role != Role.ADMIN and study.owner_id != user.id):
        raise StudyError(f"study {study_id} not found", 404)
    return study


def label_map_of(session: Session, image: Volume) -> Volume | None:
    """The first label map stored for ``image`` (lowest id), or None."""
    query = select(Volume).where(Volume.image_id == image.id, Volume.kind == "label")
    return session.scalar(query.order_by(Volume.id))


def _image(session: Session, volume_id: int, where: str) -> Volume:
    volume = session.get(Volume, volume_id)
    if volume is None:
        raise StudyError(f"{where}: volume {volume_id} not found", 404)
    if volume.kind != "image":
        raise StudyError(f"{where}: volume {volume_id} is a label map, not an image")
    return volume


def _label(session: Session, image: Volume, label_id: int | None, where: str) -> Volume | None:
    if label_id is None:
        return label_map_of(session, image)
    label = session.get(Volume, label_id)
    if label is None or label.kind != "label":
        raise StudyError(f"{where}: label map {label_id} not found", 404)
    if list(label.shape) != list(image.shape):
        raise StudyError(
            f"{where}: label map {label.id} has shape {label.shape} but image {image.id} has "
            f"{image.shape}"
        )
    return label


# --- creation ---------------------------------------------------------------------------------


def _check_arms(spec: dict[str, Any]) -> None:
    arms = spec["arms"]
    if len(arms) != 2:
        raise StudyError(f"a study has exactly two arms, got {len(arms)}")
    if arms[0]["name"].strip().lower() == arms[1]["name"].strip().lower():
        raise StudyError("the two arms need different names")
    for index, arm in enumerate(arms):
        if arm["source"] == "synthesize":
            match = arm.get("match_arm")
            match = 1 - index if match is None else match
            if match == index or match not in (0, 1):
                raise StudyError(f"arm {index}: match_arm must be the other arm ({1 - index})")
            if arms[match]["source"] != "volumes" and not arm.get("tumor_type"):
                raise StudyError(
                    f"arm {index}: sizes can only be matched to an arm of stored volumes; "
                    "give tumor_type instead"
                )
    total = sum(len(a.get("volumes") or []) + len(a.get("healthy") or []) for a in arms)
    if total > MAX_CASES:
        raise StudyError(f"a study holds at most {MAX_CASES} cases, got {total}")


def _add_volume_cases(session: Session, study: Study, arm: StudyArm, items, role: str) -> None:
    for item in items:
        where = f"arm {arm.name!r}" if role == "test" else role
        image = _image(session, item["image_id"], where)
        label = _label(session, image, item.get("label_id"), where)
        case = StudyCase(
            arm=arm,
            role=role,
            caption=(item.get("caption") or "")[:200],
            image_id=image.id,
            label_id=label.id if label else None,
            example_token=new_case_token() if role == "example" else None,
            status="pending",
            plan={},
        )
        study.cases.append(case)


def _add_synthesis_cases(session: Session, study: Study, arm: StudyArm, items) -> None:
    from syntumor_core.synthesis import ORGAN_PROFILES, PROFILES, get_organ_profile

    organ, profile = arm.settings["organ"], arm.settings["profile"]
    if organ not in ORGAN_PROFILES:
        raise StudyError(f"arm {arm.name!r}: organ must be one of {sorted(ORGAN_PROFILES)}")
    if profile not in PROFILES:
        raise StudyError(f"arm {arm.name!r}: profile must be one of {list(PROFILES)}")
    fixed = arm.settings.get("tumor_type")
    if fixed and fixed not in get_organ_profile(organ).types:
        raise StudyError(
            f"arm {arm.name!r}: tumor type {fixed!r} is not one of "
            f"{sorted(get_organ_profile(organ).types)}"
        )
    for item in items:
        where = f"arm {arm.name!r}"
        image = _image(session, item["image_id"], where)
        mask = _label(session, image, item.get("mask_id"), where)
        if mask is None:
            raise StudyError(f"{where}: image {image.id} has no organ mask (label map)")
        study.cases.append(
            StudyCase(
                arm=arm,
                role="test",
                source_image_id=image.id,
                mask_id=mask.id,
                status="pending",
                plan={"mask_labels": list(item.get("mask_labels") or [1])},
            )
        )


def create_study(session: Session, owner: User, spec: dict[str, Any]) -> Study:
    """A draft study from ``spec`` (see ``StudyCreate`` in :mod:`app.studies.api`)."""
    _check_arms(spec)
    study = Study(
        title=spec["title"].strip(),
        description=spec.get("description") or "",
        instructions=spec.get("instructions") or "",
        owner_id=owner.id,
        status=StudyStatus.DRAFT,
        positive_class=spec.get("positive_class", "synthetic"),
        allow_unsure=spec.get("allow_unsure", True),
        confidence_scale=spec.get("confidence_scale", True),
        allow_change=spec.get("allow_change", False),
        repeats=spec.get("repeats", 0),
        click_synthetic=spec.get("click_synthetic", False),
        seed=spec.get("seed") if spec.get("seed") is not None else secrets.randbits(31),
        design={key: spec.get(key) for key in ("box_mm", "spacing_mm")},
        questions=_questions(spec.get("questions")),
    )
    session.add(study)
    for position, arm_spec in enumerate(spec["arms"]):
        settings = {
            key: arm_spec.get(key)
            for key in ("organ", "profile", "tumor_type", "match_arm")
            if arm_spec["source"] == "synthesize"
        }
        if arm_spec["source"] == "synthesize" and settings.get("match_arm") is None:
            settings["match_arm"] = 1 - position
        arm = StudyArm(
            position=position,
            name=arm_spec["name"].strip(),
            truth=arm_spec["truth"],
            source=arm_spec["source"],
            settings=settings,
        )
        study.arms.append(arm)
        if arm.source == "volumes":
            _add_volume_cases(session, study, arm, arm_spec.get("volumes") or [], "test")
        else:
            _add_synthesis_cases(session, study, arm, arm_spec.get("healthy") or [])
        if not [c for c in study.cases if c.arm is arm]:
            raise StudyError(f"arm {arm.name!r} has no case")
    for example in spec.get("examples") or []:
        arm = study.arms[example.get("arm", 0)]
        _add_volume_cases(session, study, arm, [example], "example")
    for item in spec.get("practice") or []:
        _add_volume_cases(session, study, _arm_of_truth(study, item["truth"]), [item], "practice")
    n_test = sum(case.role == "test" for case in study.cases)
    if study.repeats > n_test:
        raise StudyError(f"repeats ({study.repeats}) cannot exceed the number of cases ({n_test})")
    _check_design(session, study, owner, spec)
    session.flush()
    return study


def _questions(asked: dict[str, Any] | None) -> dict[str, bool]:
    """The study's question set beyond real/synthetic: a comment, the features that told."""
    asked = asked or {}
    return {"comment": bool(asked.get("comment")), "features": bool(asked.get("features"))}


def _arm_of_truth(study: Study, truth: str) -> StudyArm:
    """The one arm whose truth a practice case has (its truth is shown after the answer)."""
    arms = [arm for arm in study.arms if arm.truth == truth]
    if len(arms) != 1:
        raise StudyError(
            f"a practice case of truth {truth!r} needs exactly one arm of that truth; "
            f"this study has {len(arms)}"
        )
    return arms[0]


def _check_design(session: Session, study: Study, owner: User, spec: dict[str, Any]) -> None:
    """Run the design checks; refuse errors and warnings not acknowledged; record them."""
    from app.studies import checks

    report = checks.design_report(session, spec)
    acknowledged = list(spec.get("acknowledge") or [])
    checks.require_acknowledged(report, acknowledged)
    study.design = {**study.design, **checks.record(report, acknowledged, owner)}


def queue_prepare(session: Session, study: Study, owner_id: int | None) -> Job:
    """Queue the worker job that measures, synthesizes and encodes the study's cases."""
    if study.status not in (StudyStatus.DRAFT, StudyStatus.FAILED):
        raise StudyError(
            f"study {study.id} is {study.status}; only a draft or failed study is prepared", 409
        )
    study.status = StudyStatus.PREPARING
    study.status_message = "queued"
    return enqueue(session, "study_prepare", {"study_id": study.id}, owner_id=owner_id)


# --- readers ----------------------------------------------------------------------------------


def _test_cases(study: Study) -> list[StudyCase]:
    return [case for case in study.cases if case.role == "test"]


def invite_reader(
    session: Session, study: Study, label: str, user: User | None = None
) -> tuple[StudyReader, str]:
    """A reader with a fresh invitation token and an own seeded reading order.

    Returns:
        The reader row and the token (shown once; only its SHA-256 is kept).
    """
    from syntumor_core.reader_study.design import reading_order

    if study.status not in (StudyStatus.READY,):
        raise StudyError(
            f"study {study.id} is {study.status}: readers can be invited once it is ready", 409
        )
    label = label.strip()
    taken = session.scalar(
        select(StudyReader.id).where(StudyReader.study_id == study.id, StudyReader.label == label)
    )
    if taken is not None:
        raise StudyError(f"study {study.id} already has a reader labelled {label!r}", 409)
    token = new_reader_token()
    seed = secrets.randbits(31)
    reader = StudyReader(
        study_id=study.id,
        label=label,
        user_id=user.id if user else None,
        token_hash=token_digest(token),
        order_seed=seed,
    )
    rng = np.random.default_rng(seed)
    practice = [study_case for study_case in study.cases if study_case.role == "practice"]
    cases = _test_cases(study)
    order = [(practice[i], 0) for i in rng.permutation(len(practice))]  # practice first
    order += [(cases[i], r) for i, r in reading_order(len(cases), study.repeats, rng=rng)]
    for position, (study_case, reading) in enumerate(order, start=1):
        reader.readings.append(
            StudyReading(
                case_id=study_case.id,
                position=position,
                reading=reading,
                token=new_case_token(),
            )
        )
    session.add(reader)
    session.flush()
    return reader, token


def reissue_link(session: Session, reader: StudyReader) -> str:
    """A new invitation token for ``reader``; the old link stops working."""
    token = new_reader_token()
    reader.token_hash = token_digest(token)
    reader.revoked = False
    session.flush()
    return token


def answered_counts(session: Session, study: Study) -> dict[int, int]:
    """Answers to test cases (practice left out) per reader id of ``study``."""
    rows = session.execute(
        select(StudyAnswer.reader_id, func.count())
        .join(StudyReader, StudyReader.id == StudyAnswer.reader_id)
        .join(StudyCase, StudyCase.id == StudyAnswer.case_id)
        .where(StudyReader.study_id == study.id, StudyCase.role == "test")
        .group_by(StudyAnswer.reader_id)
    )
    return {reader_id: count for reader_id, count in rows}


# --- descriptions (owner only: they carry the truth) ------------------------------------------


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def reader_json(reader: StudyReader, answered: int) -> dict[str, Any]:
    return {
        "id": reader.id,
        "label": reader.label,
        "user_id": reader.user_id,
        "experience_years": reader.experience_years,
        "specialty": reader.specialty,
        "order_seed": reader.order_seed,
        "revoked": reader.revoked,
        "answered": answered,
        "total": sum(reading.case.role == "test" for reading in reader.readings),
        "invited_at": _iso(reader.invited_at),
        "started_at": _iso(reader.started_at),
        "finished_at": _iso(reader.finished_at),
    }


def case_json(case: StudyCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "arm": case.arm.name,
        "truth": case.arm.truth,
        "role": case.role,
        "caption": case.caption,
        "status": case.status,
        "image_id": case.image_id,
        "label_id": case.label_id,
        "source_image_id": case.source_image_id,
        "mask_id": case.mask_id,
        "job_id": case.job_id,
        "plan": case.plan,
        "centre_mm": case.centre_mm,
    }


def settings_json(study: Study) -> dict[str, Any]:
    return {
        "positive_class": study.positive_class,
        "allow_unsure": study.allow_unsure,
        "confidence_scale": study.confidence_scale,
        "allow_change": study.allow_change,
        "repeats": study.repeats,
        "click_synthetic": study.click_synthetic,
        "questions": _questions(study.questions),
    }


def study_json(session: Session, study: Study, *, detail: bool = False) -> dict[str, Any]:
    counts = answered_counts(session, study) if detail else {}
    data: dict[str, Any] = {
        "id": study.id,
        "title": study.title,
        "description": study.description,
        "status": study.status,
        "status_message": study.status_message,
        "owner_id": study.owner_id,
        "settings": settings_json(study),
        "arms": [
            {
                "position": a.position,
                "name": a.name,
                "truth": a.truth,
                "source": a.source,
                "settings": a.settings,
                "cases": sum(c.arm_id == a.id and c.role == "test" for c in study.cases),
            }
            for a in study.arms
        ],  # fmt: skip
        "n_cases": len(_test_cases(study)),
        "n_practice": sum(case.role == "practice" for case in study.cases),
        "n_readers": len(study.readers),
        "created_at": _iso(study.created_at),
        "ready_at": _iso(study.ready_at),
        "urls": {
            "self": f"/api/v1/studies/{study.id}",
            "results": f"/api/v1/studies/{study.id}/results",
            "page": f"/studies/{study.id}",
        },
    }
    if detail:
        data["instructions"] = study.instructions
        data["design"] = study.design
        data["grid"] = study.grid
        data["seed"] = study.seed
        data["cases"] = [case_json(case) for case in study.cases]
        data["readers"] = [reader_json(r, counts.get(r.id, 0)) for r in study.readers]
    return data


def delete_study(session: Session, storage: Storage, study: Study) -> None:
    """Delete a study with its readers and answers, and its blinded copies."""
    paths = [case.served_path for case in study.cases if case.served_path]
    session.delete(study)
    session.commit()
    for path in paths:
        storage.remove_unreferenced(path)


def set_open(session: Session, study: Study, is_open: bool) -> None:
    """Close a ready study (answers refused, kept) or open a closed one again."""
    if is_open and study.status == StudyStatus.CLOSED:
        study.status = StudyStatus.READY
    elif not is_open and study.status == StudyStatus.READY:
        study.status = StudyStatus.CLOSED
    elif study.status not in (StudyStatus.READY, StudyStatus.CLOSED):
        raise StudyError(
            f"study {study.id} is {study.status}; only a ready study opens or closes", 409
        )
    session.flush()
