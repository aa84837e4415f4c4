"""ROC curves and AUCs of a reader study from the readers' confidence ratings.

Ratings come from :func:`~syntumor_core.reader_study.answers.rating` (0-10, unsure in the
middle); only first readings count. Intervals are case/reader bootstraps (seeded).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from syntumor_core.errors import ParameterError
from syntumor_core.reader_study.answers import (
    SYNTHETIC,
    Answer,
    _check_positive,
    _first_readings,
    rating,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RocCurve:
    """ROC curve of ratings (see :func:`rating`) against truth, as ``sklearn.roc_curve`` gives."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    n_answers: int


def roc_from_confidence(
    answers: Iterable[Answer], reader: str | None = None, *, positive: str = SYNTHETIC
) -> RocCurve:
    """ROC curve and AUC of the ratings (:func:`rating`) of one reader, or all pooled.

    Args:
        answers: Answers with confidences on every real/synthetic first reading.
        reader: Reader to use; None pools every reader's first readings.
        positive: ``"synthetic"`` (default) or ``"real"``.
    """
    _check_positive(positive)
    first = _first_readings(answers)
    if reader is not None:
        first = [item for item in first if item.reader == reader]
    truth = [int(item.truth == positive) for item in first]
    if len(set(truth)) != 2:
        raise ParameterError(
            f"ROC needs cases of both truths, got {len(first)} answers on "
            f"{sorted({item.truth for item in first})} cases only"
        )
    scores = [rating(item, positive=positive) for item in first]
    fpr, tpr, thresholds = roc_curve(truth, scores)
    return RocCurve(fpr, tpr, thresholds, float(roc_auc_score(truth, scores)), len(first))


def _mean_reader_auc(truth: np.ndarray, scores: np.ndarray, readers: np.ndarray) -> float:
    aucs = [
        roc_auc_score(truth[readers == reader], scores[readers == reader])
        for reader in np.unique(readers)
        if np.unique(truth[readers == reader]).size == 2
    ]
    return float(np.mean(aucs)) if aucs else math.nan


def _weighted_aucs(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of one reader's rows under each row of ``weights`` (replicates x rows), at once.

    The Mann-Whitney form of the AUC (ties count half) with rows repeated ``weights`` times;
    equal to ``roc_auc_score(truth, scores, sample_weight=w)`` for each row ``w`` (tested),
    but one matrix product instead of a 5 ms library call per replicate. NaN where a
    replicate has no weight on one truth.
    """
    positive, negative = truth == 1, truth == 0
    diff = scores[positive][:, None] - scores[negative][None, :]
    wins = (diff > 0) + 0.5 * (diff == 0)
    w_pos, w_neg = weights[:, positive], weights[:, negative]
    pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((w_pos @ wins) * w_neg).sum(axis=1) / pairs


def _row_arrays(truth, scores, cases, readers) -> tuple[np.ndarray, ...]:
    """Check and convert the per-row inputs of :func:`bootstrap_auc_ci`."""
    truth_arr, score_arr = np.asarray(truth), np.asarray(scores, dtype=float)
    if not np.isin(truth_arr, (0, 1)).all():
        raise ParameterError(f"`truth` must hold 0 and 1 only, got {np.unique(truth_arr)}")
    case_arr = np.arange(truth_arr.size) if cases is None else np.asarray(cases)
    reader_arr = np.zeros(truth_arr.size, int) if readers is None else np.asarray(readers)
    if not truth_arr.size == score_arr.size == case_arr.size == reader_arr.size:
        raise ParameterError(
            "truth, scores, cases and readers need one entry per row, got sizes "
            f"{truth_arr.size}, {score_arr.size}, {case_arr.size}, {reader_arr.size}"
        )
    return truth_arr.astype(int), score_arr, case_arr, reader_arr


def bootstrap_auc_ci(
    truth: Sequence[int],
    scores: Sequence[float],
    *,
    rng: np.random.Generator | int,
    n: int = 2000,
    cases: Sequence[str] | None = None,
    readers: Sequence[str] | None = None,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling cases within each truth.

    Cases are drawn with replacement separately among positive and negative cases (so every
    replicate has both) and bring all their rows along. With ``readers`` the statistic is the
    mean over readers of each reader's AUC (a reader-averaged AUC); without, one AUC of all rows.

    Args:
        truth: 1 for the positive class, 0 otherwise, per row.
        scores: Rating per row (higher = more likely positive).
        rng: Generator or seed; the same seed gives the same interval.
        n: Number of replicates, >= 1.
        cases: Case id per row; None makes each row its own case.
        readers: Reader id per row; None treats all rows as one reader.
        level: Two-sided coverage, in (0, 1).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when only one truth is present.
    """
    if n < 1 or not 0 < level < 1:
        raise ParameterError(f"need n >= 1 and level in (0, 1), got n={n}, level={level}")
    truth_arr, score_arr, case_arr, reader_arr = _row_arrays(truth, scores, cases, readers)
    case_ids, case_of_row = np.unique(case_arr, return_inverse=True)
    case_truth = np.zeros(case_ids.size, int)
    case_truth[case_of_row] = truth_arr
    if (case_truth[case_of_row] != truth_arr).any():
        raise ParameterError("a case has rows of both truths; each case needs one truth")
    strata = [np.flatnonzero(case_truth == value) for value in (0, 1)]
    if any(stratum.size == 0 for stratum in strata):
        return math.nan, math.nan
    generator = np.random.default_rng(rng)
    counts = np.zeros((n, case_ids.size))  # times each case is drawn, per replicate
    for stratum in strata:
        drawn = stratum[generator.integers(0, stratum.size, size=(n, stratum.size))]
        np.add.at(counts, (np.arange(n)[:, None], drawn), 1)
    per_reader = [
        _weighted_aucs(truth_arr[mine], score_arr[mine], counts[:, case_of_row[mine]])
        for mine in (reader_arr == reader for reader in np.unique(reader_arr))
    ]
    replicates = np.array(per_reader)
    usable = ~np.isnan(replicates).all(axis=0)
    if not usable.any():
        return math.nan, math.nan
    if not usable.all():
        logger.info("%d of %d bootstrap replicates had no reader with both truths; left out",
                    int((~usable).sum()), n)  # fmt: skip
    means = np.nanmean(replicates[:, usable], axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def reader_averaged_auc(
    answers: Iterable[Answer],
    *,
    positive: str = SYNTHETIC,
    rng: np.random.Generator | int = 0,
    n_bootstrap: int = 2000,
) -> tuple[float, float, float]:
    """Mean over readers of each reader's AUC, with a case-resampling bootstrap interval.

    Args:
        answers: First readings need confidences (see :func:`rating`).
        positive: ``"synthetic"`` (default) or ``"real"``.
        rng: Generator or seed of the bootstrap.
        n_bootstrap: Bootstrap replicates.

    Returns:
        ``(auc, low, high)``; NaN where no reader saw cases of both truths.
    """
    _check_positive(positive)
    first = _first_readings(answers)
    truth = np.array([int(item.truth == positive) for item in first])
    scores = np.array([rating(item, positive=positive) for item in first], dtype=float)
    readers = np.array([item.reader for item in first])
    low, high = bootstrap_auc_ci(
        truth, scores, rng=rng, n=n_bootstrap, cases=[item.case for item in first], readers=readers
    )
    return _mean_reader_auc(truth, scores, readers), low, high
