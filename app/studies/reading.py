"""What a reader may see and do: their own progress, their cases, their answers.

Blind by construction: every function here answers from the reader's own rows and the
blinded copies. Nothing returned names an arm, a truth, a volume id, a stored file name, a
repeat or another reader; the JSON of every case has the same keys and value types, and the
image URL is built from the reader's opaque per-case token alone.

Practice cases (``role="practice"``) come first in every order. They are read like the
others, but counted apart: ``position``/``total`` of a practice case count the practice cases,
progress counts test cases only, and an answered practice case carries its ``truth`` (a test
case's JSON has no ``truth``; the answer of a test case answers ``truth: null``). Their answers are stored (a reload shows them) and left out
of every result.

Answers are idempotent: one row per (reader, case, reading) under a unique constraint. The
same answer sent again returns the stored one; a different one is refused (409) unless the
study allows changes. Two concurrent first submissions race on the constraint and the loser
reads the winner's row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.study_tables import (
    Study,
    StudyAnswer,
    StudyCase,
    StudyReader,
    StudyReading,
    StudyStatus,
)
from app.studies.service import FEATURES, StudyError, token_digest

READER_API = "/api/v1/reader"


def now() -> datetime:
    return datetime.now(UTC)


def reader_for_token(session: Session, token: str) -> StudyReader | None:
    """The (not revoked) reader holding ``token``, or None."""
    reader = session.scalar(
        select(StudyReader).where(StudyReader.token_hash == token_digest(token))
    )
    return reader if reader is not None and not reader.revoked else None


def check_open(study: Study) -> None:
    if study.status != StudyStatus.READY:
        raise StudyError("this study is not open for reading at the moment", 409)


def _answers(session: Session, reader: StudyReader) -> dict[tuple[int, int], StudyAnswer]:
    rows = session.scalars(select(StudyAnswer).where(StudyAnswer.reader_id == reader.id))
    return {(row.case_id, row.reading): row for row in rows}


def answer_json(row: StudyAnswer | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "answer": row.answer,
        "confidence": row.confidence,
        "click": row.click,
        "comment": row.comment,
        "features": row.features,
        "time_ms": row.time_ms,
    }


def _questions_public(study: Study) -> dict[str, Any]:
    asked = study.questions or {}
    return {
        "comment": bool(asked.get("comment")),
        "features": list(FEATURES) if asked.get("features") else [],
    }


def practice_truth(reading: StudyReading, answered: bool) -> str | None:
    """The truth of an answered practice case; None for every test case."""
    return reading.case.arm.truth if answered and reading.case.role == "practice" else None


def _study_public(study: Study) -> dict[str, Any]:
    return {
        "title": study.title,
        "description": study.description,
        "instructions": study.instructions,
        "answers": ["real", "synthetic", "unsure"] if study.allow_unsure else ["real", "synthetic"],
        "confidence_scale": [1, 5] if study.confidence_scale else None,
        "allow_change": study.allow_change,
        "click_synthetic": study.click_synthetic,
        "questions": _questions_public(study),
        "open": study.status == StudyStatus.READY,
    }


def overview(session: Session, reader: StudyReader) -> dict[str, Any]:
    """The reader's view of the study: settings, profile, progress and their order of tokens."""
    answers = _answers(session, reader)
    readings = [
        {"position": r.position, "token": r.token, "answered": (r.case_id, r.reading) in answers,
         "practice": r.case.role == "practice"}
        for r in reader.readings
    ]  # fmt: skip
    tests = [item for item in readings if not item["practice"]]
    answered = sum(item["answered"] for item in tests)
    next_open = next((item["token"] for item in readings if not item["answered"]), None)
    examples = [c for c in reader.study.cases if c.role == "example"]
    return {
        "study": _study_public(reader.study),
        "reader": {
            "label": reader.label,
            "experience_years": reader.experience_years,
            "specialty": reader.specialty,
            "profile_done": reader.profile_at is not None,
        },
        "progress": {"answered": answered, "total": len(tests), "next": next_open},
        "readings": readings,
        "examples": [
            {
                "caption": c.caption,
                "image_url": f"{READER_API}/examples/{c.example_token}/image.nii",
            }
            for c in examples
        ],
    }


def save_profile(
    session: Session, reader: StudyReader, experience_years: int, specialty: str
) -> None:
    reader.experience_years = experience_years
    reader.specialty = specialty.strip()
    reader.profile_at = now()
    session.flush()


def reading_for_token(session: Session, reader: StudyReader, token: str) -> StudyReading:
    """The reader's own reading with this token; 404 for anyone else's or an unknown token."""
    reading = session.scalar(
        select(StudyReading).where(StudyReading.token == token, StudyReading.reader_id == reader.id)
    )
    if reading is None:
        raise StudyError("case not found", 404)
    return reading


def example_for_token(session: Session, reader: StudyReader, token: str) -> StudyCase:
    case = session.scalar(
        select(StudyCase).where(
            StudyCase.example_token == token,
            StudyCase.study_id == reader.study_id,
            StudyCase.role == "example",
        )
    )
    if case is None or not case.served_path:
        raise StudyError("example not found", 404)
    return case


def _count_tests(session: Session, query) -> int:
    return session.scalar(
        query.join(StudyCase, StudyCase.id == StudyReading.case_id).where(StudyCase.role == "test")
    )


def progress(session: Session, reader: StudyReader) -> dict[str, Any]:
    """Answered and total test readings, and the token of the first unanswered reading in
    the order, practice or test (or None)."""
    total = _count_tests(
        session, select(func.count(StudyReading.id)).where(StudyReading.reader_id == reader.id)
    )
    answered = _count_tests(
        session,
        select(func.count(StudyAnswer.id))
        .join(
            StudyReading,
            (StudyReading.reader_id == StudyAnswer.reader_id)
            & (StudyReading.case_id == StudyAnswer.case_id)
            & (StudyReading.reading == StudyAnswer.reading),
        )
        .where(StudyAnswer.reader_id == reader.id),
    )
    first_open = session.scalar(
        select(StudyReading.token)
        .outerjoin(
            StudyAnswer,
            (StudyAnswer.reader_id == StudyReading.reader_id)
            & (StudyAnswer.case_id == StudyReading.case_id)
            & (StudyAnswer.reading == StudyReading.reading),
        )
        .where(StudyReading.reader_id == reader.id, StudyAnswer.id.is_(None))
        .order_by(StudyReading.position)
        .limit(1)
    )
    return {"answered": answered, "total": total, "next": first_open}


def _group_place(session: Session, reader: StudyReader, reading: StudyReading) -> tuple[int, int]:
    """(position, total) of a reading among the reader's practice or test readings."""
    roles = dict(
        session.execute(
            select(StudyReading.position, StudyCase.role)
            .join(StudyCase, StudyCase.id == StudyReading.case_id)
            .where(StudyReading.reader_id == reader.id)
        ).all()
    )
    practice = reading.case.role == "practice"
    group = sorted(p for p, role in roles.items() if (role == "practice") == practice)
    return group.index(reading.position) + 1, len(group)


def case_view(session: Session, reader: StudyReader, reading: StudyReading) -> dict[str, Any]:
    """The JSON of one case for its reader: the same keys for every case of every arm.

    ``position``/``total`` count within the practice cases for a practice case and within the
    test cases for a test case; ``previous``/``next`` walk the whole order. A practice case
    also has ``truth``: its answer key once answered (null before); a test case has no
    ``truth`` key at all.
    """
    if reading.opened_at is None:
        reading.opened_at = now()
    if reader.started_at is None:
        reader.started_at = reading.opened_at
    session.flush()
    position, total = _group_place(session, reader, reading)
    neighbours = dict(
        session.execute(
            select(StudyReading.position, StudyReading.token).where(
                StudyReading.reader_id == reader.id,
                StudyReading.position.in_((reading.position - 1, reading.position + 1)),
            )
        ).all()
    )
    row = session.scalar(
        select(StudyAnswer).where(
            StudyAnswer.reader_id == reader.id,
            StudyAnswer.case_id == reading.case_id,
            StudyAnswer.reading == reading.reading,
        )
    )
    study = reader.study
    view = {
        "token": reading.token,
        "position": position,
        "total": total,
        "practice": reading.case.role == "practice",
        "image_url": f"{READER_API}/cases/{reading.token}/image.nii",
        "previous": neighbours.get(reading.position - 1),
        "next": neighbours.get(reading.position + 1),
        "answer": answer_json(row),
        "can_answer": study.status == StudyStatus.READY and (row is None or study.allow_change),
    }
    if view["practice"]:  # a test case's JSON never has the key
        view["truth"] = practice_truth(reading, row is not None)
    return view


def _check_answer(study: Study, body: dict[str, Any]) -> None:
    allowed = ("real", "synthetic", "unsure") if study.allow_unsure else ("real", "synthetic")
    if body["answer"] not in allowed:
        raise StudyError(f"answer must be one of {', '.join(allowed)}; got {body['answer']!r}")
    confidence = body.get("confidence")
    if study.confidence_scale and body["answer"] != "unsure" and confidence is None:
        raise StudyError("this study asks for a confidence from 1 (a guess) to 5 (certain)")
    if not study.confidence_scale and confidence is not None:
        raise StudyError("this study has no confidence scale; leave confidence out")
    if body.get("click") is not None:
        if not study.click_synthetic:
            raise StudyError(
                "this study does not ask where a case looks synthetic; leave click out"
            )
        shape = (study.grid or {}).get("shape")
        if shape and not all(0 <= v < n for v, n in zip(body["click"], shape, strict=True)):
            raise StudyError(f"click {body['click']} lies outside the image of shape {shape}")
    _check_questions(study, body)


def _check_questions(study: Study, body: dict[str, Any]) -> None:
    """Refuse answers to questions the study does not ask; an empty one counts as none."""
    asked = study.questions or {}
    if body.get("comment") and not asked.get("comment"):
        raise StudyError("this study asks for no comment; leave comment out")
    if body.get("features") and not asked.get("features"):
        raise StudyError(
            "this study does not ask which features gave a case away; leave features out"
        )
    for key in ("comment", "features"):
        if not asked.get(key):
            body[key] = None


def _same(row: StudyAnswer, body: dict[str, Any]) -> bool:
    return (row.answer, row.confidence, row.click, row.comment, row.features) == (
        body["answer"], body.get("confidence"), body.get("click"), body.get("comment"),
        body.get("features"),
    )  # fmt: skip


def submit_answer(
    session: Session, reader: StudyReader, reading: StudyReading, body: dict[str, Any]
) -> tuple[StudyAnswer, bool]:
    """Store an answer; returns (row, created). Commits.

    Raises:
        StudyError: 409 when the study is closed or the answer is final and differs; 422 for
            an answer the study does not allow.
    """
    study = reader.study
    check_open(study)
    _check_answer(study, body)
    key = {"reader_id": reader.id, "case_id": reading.case_id, "reading": reading.reading}
    existing = session.scalar(select(StudyAnswer).filter_by(**key))
    if existing is None:
        row = StudyAnswer(**key, answer=body["answer"], confidence=body.get("confidence"),
                          click=body.get("click"), comment=body.get("comment"),
                          features=body.get("features"), time_ms=body.get("time_ms") or 0)  # fmt: skip
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # a concurrent duplicate won the race: treat as a resubmission
            session.rollback()
            existing = session.scalar(select(StudyAnswer).filter_by(**key))
        else:
            _mark_finished(session, reader)
            session.commit()
            return row, True
    if _same(existing, body):
        return existing, False
    if not study.allow_change:
        raise StudyError("answers are final in this study: this case was already answered", 409)
    existing.answer, existing.confidence = body["answer"], body.get("confidence")
    existing.click = body.get("click")
    existing.comment, existing.features = body.get("comment"), body.get("features")
    existing.time_ms += body.get("time_ms") or 0
    existing.changes += 1
    existing.updated_at = now()
    session.commit()
    return existing, False


def _mark_finished(session: Session, reader: StudyReader) -> None:
    if reader.finished_at is None:
        done = progress(session, reader)
        if done["answered"] >= done["total"]:
            reader.finished_at = now()
