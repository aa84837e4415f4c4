"""Results, plots and exports of a study, with a small cache keyed by the answers' state.

The statistics (with 2,000 bootstrap replicates per AUC) are computed once per state of the
answers: the results page asks for them with each of its plots, and nothing changes between.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.study_tables import Study, StudyAnswer, StudyReader
from app.studies import plots
from app.studies import results as results_service
from app.studies.service import StudyError, study_json
from app.volumes.storage import Storage

CACHE_ENTRIES = 32
_cache: dict[tuple, dict[str, Any]] = {}
_lock = threading.Lock()


def _fingerprint(session: Session, study: Study) -> tuple:
    count, last_id, last_change = session.execute(
        select(
            func.count(StudyAnswer.id), func.max(StudyAnswer.id), func.max(StudyAnswer.updated_at)
        )
        .join(StudyReader, StudyReader.id == StudyAnswer.reader_id)
        .where(StudyReader.study_id == study.id)
    ).one()
    readers = session.scalar(select(func.count()).where(StudyReader.study_id == study.id))
    return (study.id, count, last_id, str(last_change), readers, study.positive_class, study.seed)


def results(session: Session, study: Study) -> dict[str, Any]:
    """The study's results (cached while its answers do not change)."""
    key = _fingerprint(session, study)
    with _lock:
        if key in _cache:
            return _cache[key]
    computed = results_service.compute_results(session, study)
    with _lock:
        if len(_cache) >= CACHE_ENTRIES:
            _cache.pop(next(iter(_cache)))
        _cache[key] = computed
    return computed


def _click_cases(session: Session, storage: Storage, study: Study) -> list[dict[str, Any]]:
    from syntumor_core.reader_study.blinding import decode_case

    rows = results_service.answer_rows(session, study)
    clicks: dict[int, list] = {}
    for row in rows:
        if row["click_i"] is not None:
            clicks.setdefault(row["case_id"], []).append(
                [row["click_i"], row["click_j"], row["click_k"]]
            )
    cases = []
    for case in study.cases:
        if case.id in clicks and case.served_path:
            image, _, _ = decode_case(storage.absolute(case.served_path).read_bytes())
            title = f"{results_service.case_name(case.id)} ({case.arm.name})"
            cases.append({"title": title, "image": image, "clicks": clicks[case.id]})
    return cases


def plot(session: Session, storage: Storage, study: Study, name: str) -> bytes:
    """``confusion``, ``roc`` or ``clicks`` as PNG bytes."""
    if name == "confusion":
        return plots.confusion_png(results(session, study))
    if name == "roc":
        return plots.roc_png(results(session, study))
    if name == "clicks":
        return plots.clicks_png(_click_cases(session, storage, study))
    raise StudyError(f"no plot {name!r}; choose confusion, roc or clicks", 404)


def export_csv(session: Session, study: Study, name: str) -> str:
    rows = results_service.answer_rows(session, study)
    if name == "answers.csv":
        return results_service.answers_csv(rows)
    style = "imrmc" if name == "mrmc-imrmc.csv" else "long"
    return results_service.mrmc_csv(study, rows, style)


def summary(session: Session, study: Study) -> dict[str, Any]:
    """Study design, results and the definitions of every number, in one JSON document."""
    return {"study": study_json(session, study), "results": results(session, study)}
