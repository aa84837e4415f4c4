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

from app.db.study_tables import Study, StudyAnswer, StudyArm, StudyCase, StudyReader, StudyReading
from app.exports import SafeDictWriter
from syntumor_core import reader_study as rs
from syntumor_core.errors import ParameterError

N_BOOTSTRAP = 2000
ANSWER_COLUMNS = (
    "study_id", "reader", "experience_years", "specialty", "case", "arm", "truth", "reading",
    "position", "answer", "confidence", "time_ms", "click_i", "click_j", "click_k", "changes",
    "answered_at", "changed_at", "features", "comment",
)  # fmt: skip


def case_name(case_id: int) -> str:
    return f"case-{case_id}"


def answer_rows(session: Session, study: Study) -> list[dict[str, Any]]:
    """Every stored answer to a test case of ``study`` with its reader, case, arm and truth
    (owner only). Practice answers are left out here, so out of every number and export."""
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
        .where(StudyReader.study_id == study.id, StudyCase.role == "test")  # never practice
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
            "comment": answer.comment, "features": " ".join(answer.features or []) or None,
            "feature_list": list(answer.features or []),
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
            "answers": len(mine),
            "readings": sum(r.case.role == "test" for r in reader.readings),
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
        "questions": question_summary(study, rows),
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


def _feature_counts(rows: list[dict[str, Any]], key: str, values: list[str]) -> list[dict]:
    from app.studies.service import FEATURES

    table = []
    for value in values:
        mine = [row for row in rows if row[key] == value]
        counts = {name: sum(name in row["feature_list"] for row in mine) for name in FEATURES}
        table.append({key: value, "answers": len(mine), "counts": counts})
    return table


def question_summary(study: Study, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What readers said beyond real/synthetic: features that gave cases away, counted per
    arm and per answer, and every comment with its case (test cases only)."""
    from app.studies.service import FEATURES

    asked = {key: bool((study.questions or {}).get(key)) for key in ("comment", "features")}
    answers = [a for a in ("real", "synthetic", "unsure") if any(r["answer"] == a for r in rows)]
    return {
        "asked": asked,
        "feature_names": list(FEATURES),
        "features_by_arm": _feature_counts(rows, "arm", [arm.name for arm in study.arms]),
        "features_by_answer": _feature_counts(rows, "answer", answers),
        "comments": [{key: row[key] for key in ("case", "arm", "truth", "reader", "answer",
                                                "confidence", "comment")}
                     for row in sorted(rows, key=lambda r: (r["case_id"], r["reader"]))
                     if row["comment"]],
    }  # fmt: skip


def design_summary(study: Study) -> dict[str, Any]:
    """Who read what under which rules: the study's design as reported beside the numbers."""
    tests = [c for c in study.cases if c.role == "test"]
    practice = sum(c.role == "practice" for c in study.cases)

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
        f"{(study.grid or {}).get('shape')} at {(study.grid or {}).get('spacing_mm')} mm and "
        "served as uncompressed int16 NIfTI with identical header bytes and one file size; "
        "opaque per-reader case URLs; own seeded random order per reader",
        "order": "each reader's order is drawn from the reader's recorded seed (order_seed)"
        + ("; practice cases first, their truth shown after each answer, left out of every "
           "number and export" if practice else ""),
        "practice_cases": practice,
        "questions": {key: bool((study.questions or {}).get(key)) for key in ("comment", "features")},
        **design_checks_summary(study, tests),
    }  # fmt: skip


def design_checks_summary(study: Study, tests: list[StudyCase]) -> dict[str, Any]:
    """The design checks recorded at creation, who acknowledged them, the cues that remain,
    and the tumor sizes of the two arms compared once they are measured."""
    design = study.design or {}
    checks = list(design.get("checks") or [])
    size_check = sizes_after_preparation(study, tests)
    if size_check:
        checks.append(size_check)
    cues = [c["cue"] for c in checks if c["level"] == "warning" and c.get("cue")]
    return {
        "checks": checks,
        "arms_made_of": design.get("arms_made_of"),
        "acknowledged": design.get("acknowledged") or [],
        "acknowledged_by": design.get("acknowledged_by"),
        "acknowledged_at": design.get("acknowledged_at"),
        "cues": cues,
        "checked": "checks" in design,
    }


def _largest(case: StudyCase) -> float | None:
    plan = case.plan or {}
    sizes = plan.get("synthesized_diameters_mm", plan.get("diameters_mm")) or []
    return float(sizes[0]) if sizes else None


def sizes_after_preparation(study: Study, tests: list[StudyCase]) -> dict[str, Any] | None:
    """A warning when the arms' measured largest tumors differ (Mann-Whitney U, p < 0.05)."""
    from scipy.stats import mannwhitneyu

    per_arm = [[d for c in tests if c.arm_id == arm.id and (d := _largest(c)) is not None]
               for arm in study.arms]  # fmt: skip
    if len(per_arm) != 2 or min(len(sizes) for sizes in per_arm) < 3:
        return None
    p_value = float(mannwhitneyu(per_arm[0], per_arm[1]).pvalue)
    medians = [pystats.median(sizes) for sizes in per_arm]
    text = ", ".join(f"{arm.name} median {m:.1f} mm" for arm, m in zip(study.arms, medians,
                                                                    strict=True))  # fmt: skip
    if p_value >= 0.05:
        return {"code": "tumor_sizes", "level": "info", "cue": None,
                "message": f"measured largest tumors alike ({text}; Mann-Whitney p = {p_value:.2g})"}  # fmt: skip
    return {"code": "tumor_sizes_differ", "level": "warning", "cue": f"tumor size ({text})",
            "message": f"the arms' measured largest tumors differ ({text}; Mann-Whitney "
            f"p = {p_value:.2g}): size alone may tell the arms apart (found after preparation)"}  # fmt: skip


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
