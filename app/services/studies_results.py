"""Results of a study for its owner: statistics, exports, and the definitions beside them.

The numbers come from :mod:`syntumor_core.reader_study` (statsmodels, SciPy, scikit-learn);
this module only turns the stored answers into the core's :class:`Answer` list and the results
into JSON (NaN becomes ``null``: "not defined", see the definitions) and CSV. Bootstrap
intervals draw from the study's recorded seed, so the same answers give the same numbers.
"""

from __future__ import annotations

import io
import math
import statistics as pystats
from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.exports import SafeDictWriter
from app.models_studies import Study, StudyAnswer, StudyArm, StudyCase, StudyReader, StudyReading
from syntumor_core import reader_study as rs
from syntumor_core.errors import ParameterError

N_BOOTSTRAP = 2000
ANSWER_COLUMNS = (
    "study_id", "reader", "experience_years", "specialty", "case", "arm", "truth", "reading",
    "position", "answer", "confidence", "time_ms", "click_i", "click_j", "click_k", "changes",
    "answered_at", "changed_at",
)  # fmt: skip


def case_name(case_id: int) -> str:
    return f"case-{case_id}"


def answer_rows(session: Session, study: Study) -> list[dict[str, Any]]:
    """Every stored answer of ``study`` with its reader, case, arm and truth (owner only)."""
    query = (
        select(StudyAnswer, StudyReader, StudyCase, StudyArm, StudyReading.position)
        .join(StudyReader, StudyReader.id == StudyAnswer.reader_id)
        .join(StudyCase, StudyCase.id == StudyAnswer.case_id)
        .join(StudyArm, StudyArm.id == StudyCase.arm_id)
        .join(
            StudyReading,
            (StudyReading.reader_id == StudyAnswer.reader_id)
            & (StudyReading.case_id == StudyAnswer.case_id)
            & (StudyReading.reading == StudyAnswer.reading),
        )
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.id, StudyReading.position)
    )
    rows = []
    for answer, reader, case, arm, position in session.execute(query):
        click = answer.click or [None, None, None]
        rows.append({
            "study_id": study.id, "reader": reader.label,
            "experience_years": reader.experience_years, "specialty": reader.specialty,
            "case": case_name(case.id), "case_id": case.id, "arm": arm.name, "truth": arm.truth,
            "reading": answer.reading, "position": position, "answer": answer.answer,
            "confidence": answer.confidence, "time_ms": answer.time_ms,
            "click_i": click[0], "click_j": click[1], "click_k": click[2],
            "changes": answer.changes, "answered_at": answer.created_at.isoformat(),
            "changed_at": answer.updated_at.isoformat() if answer.changes else None,
        })  # fmt: skip
    return rows


def core_answers(rows: list[dict[str, Any]], *, fill_confidence: bool = False) -> list[rs.Answer]:
    """The core's answers; ``fill_confidence`` gives confidence 1 to answers without one."""
    return [
        rs.Answer(
            reader=row["reader"], case=row["case"], truth=row["truth"], answer=row["answer"],
            confidence=row["confidence"] if row["confidence"] is not None or not fill_confidence
            or row["answer"] == rs.UNSURE else 1,
            repeat=row["reading"],
        )
        for row in rows
    ]  # fmt: skip


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy → Python, dataclasses → dicts."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    if hasattr(value, "tolist"):
        return clean(value.tolist())
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    return value


def _roc_curves(answers: list[rs.Answer], readers: list[str], positive: str) -> list[dict]:
    curves = []
    for reader in [*readers, None]:
        try:
            curve = rs.roc_from_confidence(answers, reader, positive=positive)
        except ParameterError:
            continue
        curves.append({
            "reader": reader or rs.POOLED_READER, "auc": curve.auc, "n_answers": curve.n_answers,
            "fpr": curve.fpr.tolist(), "tpr": curve.tpr.tolist(),
        })  # fmt: skip
    return curves


def _unsure_split(answers: list[rs.Answer], positive: str) -> dict[str, int]:
    counts = rs.confusion_counts(answers, positive=positive)
    return {
        "negative": counts["unsure_negative_truth"],
        "positive": counts["unsure_positive_truth"],
    }


def _reader_info(session: Session, study: Study, rows: list[dict]) -> list[dict[str, Any]]:
    times: dict[str, list[int]] = {}
    for row in rows:
        times.setdefault(row["reader"], []).append(row["time_ms"])
    info = []
    for reader in session.scalars(select(StudyReader).where(StudyReader.study_id == study.id)):
        mine = times.get(reader.label, [])
        info.append({
            "reader": reader.label, "experience_years": reader.experience_years,
            "specialty": reader.specialty, "order_seed": reader.order_seed,
            "answers": len(mine), "readings": len(reader.readings),
            "median_time_s": round(pystats.median(mine) / 1000, 2) if mine else None,
        })  # fmt: skip
    return info


def compute_results(
    session: Session, study: Study, *, n_bootstrap: int = N_BOOTSTRAP
) -> dict[str, Any]:
    """Per reader and pooled statistics, agreement, ROC and per-arm rates (JSON-ready)."""
    rows = answer_rows(session, study)
    answers = core_answers(rows)
    positive = study.positive_class
    arms = {case_name(c.id): c.arm.name for c in study.cases if c.role == "test"}
    base = {
        "study_id": study.id,
        "positive_class": positive,
        "n_answers": len(rows),
        "bootstrap": {"replicates": n_bootstrap, "seed": study.seed},
        "readers": _reader_info(session, study, rows),
        "definitions": rs.definitions(positive),
        "design": design_summary(study),
    }
    first = [a for a in answers if a.repeat == 0]
    if not first:
        return clean({**base, "per_reader": [], "pooled": None, "agreement": None,
                      "roc": [], "arms": None})  # fmt: skip
    labels = sorted({a.reader for a in first})
    per_reader = [
        rs.reader_stats(
            answers, reader=label, positive=positive, rng=study.seed, n_bootstrap=n_bootstrap
        )
        for label in labels
    ]
    pooled = rs.pooled_stats(answers, positive=positive, rng=study.seed, n_bootstrap=n_bootstrap)
    unsure_by_truth = {
        label: _unsure_split([a for a in answers if a.reader == label], positive)
        for label in labels
    }
    unsure_by_truth[rs.POOLED_READER] = _unsure_split(answers, positive)
    averaged = None
    if study.confidence_scale and len({a.truth for a in first}) == 2:
        auc, low, high = rs.reader_averaged_auc(
            answers, positive=positive, rng=study.seed, n_bootstrap=n_bootstrap
        )
        averaged = {"auc": auc, "low": low, "high": high}
    agreement = {
        "cohen_kappa": rs.cohen_kappa_pairs(answers),
        "fleiss_kappa": rs.fleiss_kappa_all(answers),
        "intra_reader_kappa": list(rs.intra_reader_kappa(answers).values()),
    }
    return clean({
        **base,
        "per_reader": per_reader,
        "pooled": pooled,
        "unsure_by_truth": unsure_by_truth,
        "reader_averaged_auc": averaged,
        "agreement": agreement,
        "roc": _roc_curves(answers, labels, positive) if study.confidence_scale else [],
        "arms": {"rates": list(rs.arm_rates(answers, arms).values()),
                 "comparison": rs.arm_comparison(answers, arms)},
    })  # fmt: skip


def design_summary(study: Study) -> dict[str, Any]:
    """Who read what under which rules: the study's design as reported beside the numbers."""
    tests = [c for c in study.cases if c.role == "test"]

    def sizes(case: StudyCase) -> list[float]:
        plan = case.plan or {}
        return plan.get("synthesized_diameters_mm", plan.get("diameters_mm")) or []

    return {
        "title": study.title,
        "description": study.description,
        "arms": [
            {"name": arm.name, "truth": arm.truth, "source": arm.source, "settings": arm.settings,
             "cases": sum(c.arm_id == arm.id for c in tests),
             "tumor_diameters_mm": [sizes(c) for c in tests if c.arm_id == arm.id],
             "largest_tumor_mm": [round(sizes(c)[0], 1) for c in tests
                                  if c.arm_id == arm.id and sizes(c)]}
            for arm in study.arms
        ],
        "examples": [c.caption for c in study.cases if c.role == "example"],
        "settings": {
            "answers": "real / synthetic" + (" / unsure" if study.allow_unsure else ""),
            "confidence_scale": "1 (a guess) to 5 (certain)" if study.confidence_scale else None,
            "answers_may_change": study.allow_change,
            "repeated_cases": study.repeats,
            "click_where_synthetic": study.click_synthetic,
        },
        "blinding": "every case resampled to one grid "
        f"{(study.grid or {}).get('shape')} at {(study.grid or {}).get('spacing_mm')} mm, "
        "re-encoded with identical NIfTI headers and padded to one file size; opaque per-reader "
        "case URLs; own seeded random order per reader",
        "order": "each reader's order is drawn from the reader's recorded seed (order_seed)",
    }  # fmt: skip


def answers_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = SafeDictWriter(out, fieldnames=ANSWER_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def mrmc_csv(study: Study, rows: list[dict[str, Any]], style: str = "long") -> str:
    """MRMC rows for R (long: reader, case, modality, truth, rating; or iMRMC's layout).

    Without a confidence scale the rating is 6 for a positive answer, 5 for unsure and 4 for a
    negative answer (confidence 1 assumed), an ordinal three-level rating.
    """
    answers = core_answers(rows, fill_confidence=not study.confidence_scale)
    if not answers:
        return ""
    table = rs.mrmc_rows(answers, positive=study.positive_class, modality="syntumor", style=style)
    out = io.StringIO()
    writer = SafeDictWriter(out, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()
