"""Statistics of a reader study (Visual Turing Test): can readers tell real tumors from synthetic?

Every reader sees each case (a CT volume with a real or a synthetic tumor) and answers
``"real"``, ``"synthetic"`` or ``"unsure"``, optionally with a confidence from 1 (a guess) to 5
(certain). Everything here is a pure function of a list of :class:`Answer`; the statistics come
from statsmodels, SciPy and scikit-learn. Conventions used throughout:

* The **positive class** is ``"synthetic"`` unless ``positive="real"`` is passed; every count
  and rate is named against it (see :func:`definitions`, print it beside the numbers).
* Only the **first reading** (``repeat == 0``) of a case enters the per-reader statistics,
  agreement between readers, ROC and the MRMC export; later readings serve
  :func:`intra_reader_kappa` alone.
* **Unsure** answers are left out of sensitivity, specificity, accuracy, PPV, NPV and the
  binomial test, and reported twice more: as wrong (``accuracy_unsure_as_wrong``) and as a rate.
* A ratio with a **zero denominator is NaN** (never a crash): "not defined, no answer of that
  kind", e.g. specificity when every real case was answered unsure.

Example:
    >>> first = Answer("r1", "c1", truth="synthetic", answer="synthetic", confidence=4)
    >>> stats = reader_stats([first, Answer("r1", "c2", truth="real", answer="unsure")])
    >>> stats.sensitivity.value, stats.unsure_rate.value
    (1.0, 0.5)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from syntumor_core.errors import ParameterError
from syntumor_core.reader_study.agreement import (  # noqa: F401  (the statistics in one place)
    PairKappa,
    cohen_kappa_pairs,
    fleiss_kappa_all,
    intra_reader_kappa,
)
from syntumor_core.reader_study.answers import (  # noqa: F401
    CATEGORIES,
    CONFIDENCE_MAX,
    CONFIDENCE_MIN,
    POOLED_READER,
    RATING_UNSURE,
    REAL,
    SYNTHETIC,
    TRUTHS,
    UNSURE,
    Answer,
    _check_positive,
    _first_readings,
    rating,
)
from syntumor_core.reader_study.roc import (  # noqa: F401
    RocCurve,
    _weighted_aucs,
    bootstrap_auc_ci,
    reader_averaged_auc,
    roc_from_confidence,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Proportion:
    """A proportion with its 95 % Wilson score interval; all three NaN when denominator is 0."""

    value: float
    low: float
    high: float
    numerator: int
    denominator: int


@dataclass(frozen=True)
class ReaderStats:
    """Per-reader (or pooled) results; see :func:`definitions` for every field."""

    reader: str
    positive_class: str
    n_cases: int
    n_answers: int
    tp: int
    fp: int
    tn: int
    fn: int
    unsure: int
    sensitivity: Proportion
    specificity: Proportion
    accuracy: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy_unsure_as_wrong: Proportion
    unsure_rate: Proportion
    binomial_p_value: float
    auc: float | None = None
    auc_low: float | None = None
    auc_high: float | None = None


def wilson_proportion(numerator: int, denominator: int) -> Proportion:
    """Proportion ``numerator / denominator`` with its 95 % Wilson interval (NaN if 0 / 0).

    Args:
        numerator: Count of successes.
        denominator: Count of trials, ``>= numerator``.
    """
    if denominator == 0:
        return Proportion(math.nan, math.nan, math.nan, 0, 0)
    low, high = proportion_confint(numerator, denominator, alpha=0.05, method="wilson")
    return Proportion(numerator / denominator, float(low), float(high), numerator, denominator)


def confusion_counts(answers: Iterable[Answer], *, positive: str = SYNTHETIC) -> dict[str, int]:
    """Confusion counts of the first readings, ``positive`` being the positive class.

    Args:
        answers: Answers of one or more readers (all are counted together).
        positive: ``"synthetic"`` (default) or ``"real"``.

    Returns:
        ``tp, fp, tn, fn`` over real/synthetic answers, ``unsure`` in total and split by truth
        (``unsure_positive_truth``, ``unsure_negative_truth``).
    """
    negative = _check_positive(positive)
    first = _first_readings(answers)
    definite = [item for item in first if item.answer != UNSURE]
    tn = fp = fn = tp = 0
    if definite:
        matrix = confusion_matrix(
            [item.truth for item in definite],
            [item.answer for item in definite],
            labels=[negative, positive],
        )
        tn, fp, fn, tp = (int(count) for count in matrix.ravel())
    unsure = [item for item in first if item.answer == UNSURE]
    unsure_positive = sum(item.truth == positive for item in unsure)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "unsure": len(unsure),
        "unsure_positive_truth": unsure_positive,
        "unsure_negative_truth": len(unsure) - unsure_positive,
    }  # fmt: skip


def _has_confidence(first: Sequence[Answer]) -> bool:
    definite = [item for item in first if item.answer != UNSURE]
    return bool(definite) and all(item.confidence is not None for item in definite)


def _stats(
    first: list[Answer],
    reader: str,
    positive: str,
    rng: np.random.Generator | int,
    n_bootstrap: int,
) -> ReaderStats:
    counts = confusion_counts(first, positive=positive)
    tp, fp, tn, fn, unsure = (counts[key] for key in ("tp", "fp", "tn", "fn", "unsure"))
    definite, total = tp + fp + tn + fn, tp + fp + tn + fn + unsure
    p_value = binomtest(tp + tn, definite, 0.5).pvalue if definite else math.nan
    auc = auc_low = auc_high = None
    if _has_confidence(first):
        truth = [int(item.truth == positive) for item in first]
        if len(set(truth)) == 2:
            scores = [rating(item, positive=positive) for item in first]
            auc = float(roc_auc_score(truth, scores))
            auc_low, auc_high = bootstrap_auc_ci(
                truth, scores, cases=[item.case for item in first], rng=rng, n=n_bootstrap
            )
        else:
            auc = auc_low = auc_high = math.nan
    return ReaderStats(
        reader=reader, positive_class=positive,
        n_cases=len({item.case for item in first}), n_answers=total,
        tp=tp, fp=fp, tn=tn, fn=fn, unsure=unsure,
        sensitivity=wilson_proportion(tp, tp + fn),
        specificity=wilson_proportion(tn, tn + fp),
        accuracy=wilson_proportion(tp + tn, definite),
        ppv=wilson_proportion(tp, tp + fp),
        npv=wilson_proportion(tn, tn + fn),
        accuracy_unsure_as_wrong=wilson_proportion(tp + tn, total),
        unsure_rate=wilson_proportion(unsure, total),
        binomial_p_value=float(p_value),
        auc=auc, auc_low=auc_low, auc_high=auc_high,
    )  # fmt: skip


def reader_stats(
    answers: Iterable[Answer],
    *,
    reader: str | None = None,
    positive: str = SYNTHETIC,
    rng: np.random.Generator | int = 0,
    n_bootstrap: int = 2000,
) -> ReaderStats:
    """Confusion counts, rates with Wilson intervals, binomial test and AUC of one reader.

    Args:
        answers: Answers; may hold several readers if ``reader`` picks one.
        reader: Reader to report; may be left out when the answers hold one reader only.
        positive: ``"synthetic"`` (default) or ``"real"``.
        rng: Generator or seed of the AUC bootstrap (run only when every real/synthetic
            answer has a confidence; otherwise ``auc`` and its bounds are None).
        n_bootstrap: Bootstrap replicates of the AUC interval.
    """
    _check_positive(positive)
    first = _first_readings(answers)
    readers = sorted({item.reader for item in first})
    if reader is None:
        if len(readers) != 1:
            raise ParameterError(
                f"answers hold {len(readers)} readers {readers}; pass `reader` "
                "to pick one, or use pooled_stats"
            )
        reader = readers[0]
    elif reader not in readers:
        raise ParameterError(f"`reader` {reader!r} has no first-reading answer; readers: {readers}")
    mine = [item for item in first if item.reader == reader]
    return _stats(mine, reader, positive, rng, n_bootstrap)


def pooled_stats(
    answers: Iterable[Answer],
    *,
    positive: str = SYNTHETIC,
    rng: np.random.Generator | int = 0,
    n_bootstrap: int = 2000,
) -> ReaderStats:
    """Like :func:`reader_stats`, with every reader's first readings pooled into one table.

    The Wilson intervals and binomial test treat pooled answers as independent although
    readers see the same cases, so they are too narrow; the AUC interval resamples cases
    (each with all its readings) and is not. ``reader`` is :data:`POOLED_READER`.

    Args:
        answers: Answers of any number of readers (at least one first reading).
        positive: ``"synthetic"`` (default) or ``"real"``.
        rng: Generator or seed of the AUC bootstrap.
        n_bootstrap: Bootstrap replicates of the AUC interval.
    """
    _check_positive(positive)
    first = _first_readings(answers)
    if not first:
        raise ParameterError("answers hold no first reading (repeat == 0); nothing to pool")
    return _stats(first, POOLED_READER, positive, rng, n_bootstrap)


def mrmc_rows(
    answers: Iterable[Answer],
    *,
    positive: str = SYNTHETIC,
    modality: str = "syntumor",
    style: str = "long",
) -> list[dict[str, str | int]]:
    """Rows for R multi-reader multi-case tools, one per first reading.

    ``style="long"``: columns ``reader, case, modality, truth`` (1 = ``positive``, 0 = not)
    and ``rating`` (:func:`rating`, 0-10). ``style="imrmc"``: the data frame of the R package
    iMRMC (``doIMRMC``): ``readerID, caseID, modalityID, score``, led by one truth row per case
    with ``readerID = modalityID = "truth"`` and ``score`` 0/1. Write either with ``csv``.

    Args:
        answers: First readings need confidences unless unsure.
        positive: ``"synthetic"`` (default) or ``"real"``.
        modality: Name of the test (e.g. generator version) for comparing several.
        style: ``"long"`` or ``"imrmc"``.
    """
    if style not in ("long", "imrmc"):
        raise ParameterError(f"`style` must be 'long' or 'imrmc', got {style!r}")
    _check_positive(positive)
    first = _first_readings(answers)
    rows = [{"reader": item.reader, "case": item.case, "modality": modality,
             "truth": int(item.truth == positive), "rating": rating(item, positive=positive)}
            for item in first]  # fmt: skip
    if style == "long":
        return rows
    truth_of = {row["case"]: row["truth"] for row in rows}
    truth_rows = [{"readerID": "truth", "caseID": case, "modalityID": "truth", "score": value}
                  for case, value in truth_of.items()]  # fmt: skip
    renamed = {"reader": "readerID", "case": "caseID", "modality": "modalityID", "rating": "score"}
    return truth_rows + [{new: row[old] for old, new in renamed.items()} for row in rows]


def definitions(positive: str = SYNTHETIC) -> dict[str, str]:
    """Plain-language definition of every statistic here, naming the positive class.

    Args:
        positive: ``"synthetic"`` (default) or ``"real"``.
    """
    negative = _check_positive(positive)
    pos, neg = f"{positive} case", f"{negative} case"
    return {
        "positive_class": f"the class counted as 'positive': {positive}",
        "tp": f"true positives: {pos}s answered {positive}",
        "fp": f"false positives: {neg}s answered {positive}",
        "tn": f"true negatives: {neg}s answered {negative}",
        "fn": f"false negatives: {pos}s answered {negative}",
        "unsure": "answers 'unsure'; left out of every rate below unless said otherwise",
        "sensitivity": f"TP / (TP + FN): share of {pos}s, answered real or synthetic, "
        f"called {positive}",
        "specificity": f"TN / (TN + FP): share of {neg}s, answered real or synthetic, "
        f"called {negative}",
        "accuracy": "(TP + TN) / (TP + FP + TN + FN): share of real/synthetic answers that were "
        "right (unsure left out); 50 % is chance",
        "ppv": f"TP / (TP + FP): share of '{positive}' answers that were right",
        "npv": f"TN / (TN + FN): share of '{negative}' answers that were right",
        "accuracy_unsure_as_wrong": "(TP + TN) / all answers: unsure counted as wrong",
        "unsure_rate": "unsure / all answers",
        "wilson_interval": "each rate comes with its 95 % Wilson score interval [low, high]",
        "binomial_p_value": "two-sided exact binomial test of accuracy (unsure left out) against "
        "0.5; small means readers did better or worse than chance",
        "rating": f"how sure the case is {positive}, 0-10: answer {positive} with confidence c "
        f"(1-5) -> 5 + c, answer {negative} -> 5 - c, unsure -> 5",
        "auc": f"area under the ROC curve of the ratings: chance that a random {pos} gets a "
        f"higher rating than a random {neg} (ties half); 0.5 is chance",
        "auc_ci": "95 % percentile bootstrap interval of the AUC, resampling cases within truth",
        "cohen_kappa": "agreement of two readers on the cases both read (real / synthetic / "
        "unsure) beyond chance: 1 perfect, 0 chance level; 95 % interval from its standard error",
        "fleiss_kappa": "agreement of all readers on the cases all read, beyond chance",
        "intra_reader_kappa": "Cohen's kappa of a reader's first and second reading of a case",
        "nan": "not defined: no answer fell in the denominator (e.g. every such case unsure), "
        "or every answer was the same so chance agreement is 1",
        "first_reading": "only the first showing of a case (repeat 0) enters the statistics; "
        "repeats serve intra-reader kappa only",
    }


DEFINITIONS: dict[str, str] = definitions(SYNTHETIC)
"""Definitions with ``synthetic`` as the positive class (the published convention)."""
