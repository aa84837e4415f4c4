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

import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from syntumor_core.errors import ParameterError

logger = logging.getLogger(__name__)

REAL, SYNTHETIC, UNSURE = "real", "synthetic", "unsure"
TRUTHS = (REAL, SYNTHETIC)
CATEGORIES = (REAL, SYNTHETIC, UNSURE)
CONFIDENCE_MIN, CONFIDENCE_MAX = 1, 5
RATING_UNSURE = 5
"""Rating of an unsure answer; see :func:`rating` for the whole 0-10 scale."""
POOLED_READER = "(all readers)"


@dataclass(frozen=True)
class Answer:
    """One reader's answer on one case.

    Args:
        reader: Reader id.
        case: Case id; the same case must carry the same ``truth`` in every answer.
        truth: ``"real"`` or ``"synthetic"`` (the arm of the case).
        answer: ``"real"``, ``"synthetic"`` or ``"unsure"``.
        confidence: Optional 1 (a guess) to 5 (certain), how sure the reader is of ``answer``.
        repeat: 0 for the first reading, 1 for the second showing of the same case, ...
    """

    reader: str
    case: str
    truth: str
    answer: str
    confidence: int | None = None
    repeat: int = 0

    def __post_init__(self) -> None:
        conf = self.confidence
        conf_ok = conf is None or _is_int_in(conf, CONFIDENCE_MIN, CONFIDENCE_MAX)
        problems = [
            (isinstance(self.reader, str) and self.reader, "reader", "a non-empty string"),
            (isinstance(self.case, str) and self.case, "case", "a non-empty string"),
            (self.truth in TRUTHS, "truth", f"one of {TRUTHS}"),
            (self.answer in CATEGORIES, "answer", f"one of {CATEGORIES}"),
            (conf_ok, "confidence", f"None or an integer in [{CONFIDENCE_MIN}, {CONFIDENCE_MAX}]"),
            (_is_int_in(self.repeat, 0, math.inf), "repeat", "an integer >= 0"),
        ]
        for ok, name, rule in problems:
            if not ok:
                raise ParameterError(f"`{name}` must be {rule}, got {getattr(self, name)!r}")


def _is_int_in(value: object, low: float, high: float) -> bool:
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    return is_int and low <= value <= high  # type: ignore[operator]


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


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa between two readers (or one reader's two readings) with its 95 % CI."""

    reader_a: str
    reader_b: str
    n_cases: int
    kappa: float
    low: float
    high: float
    observed_agreement: float


@dataclass(frozen=True)
class RocCurve:
    """ROC curve of ratings (see :func:`rating`) against truth, as ``sklearn.roc_curve`` gives."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    n_answers: int


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


def _check_positive(positive: str) -> str:
    if positive not in TRUTHS:
        raise ParameterError(f"`positive` must be one of {TRUTHS}, got {positive!r}")
    return REAL if positive == SYNTHETIC else SYNTHETIC


def _first_readings(answers: Iterable[Answer]) -> list[Answer]:
    """Check the answers fit together and return the first readings, in input order."""
    answers = list(answers)
    seen: set[tuple[str, str, int]] = set()
    truth_of: dict[str, str] = {}
    for item in answers:
        key = (item.reader, item.case, item.repeat)
        if key in seen:
            raise ParameterError(
                f"reader {item.reader!r} answered case {item.case!r} "
                f"(repeat {item.repeat}) twice; one answer per reading"
            )
        seen.add(key)
        if truth_of.setdefault(item.case, item.truth) != item.truth:
            raise ParameterError(
                f"case {item.case!r} has truth {truth_of[item.case]!r} in one "
                f"answer and {item.truth!r} in another; a case has one truth"
            )
    return [item for item in answers if item.repeat == 0]


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


def rating(answer: Answer, *, positive: str = SYNTHETIC) -> int:
    """Map answer and confidence to one 0-10 rating of "how sure the case is ``positive``".

    ``positive`` answered with confidence c gives ``5 + c`` (6-10), the other class gives
    ``5 - c`` (0-4), unsure gives 5 whatever its confidence. Only the order matters to ROC.

    Args:
        answer: An answer; it needs a confidence unless it is unsure.
        positive: ``"synthetic"`` (default) or ``"real"``.
    """
    _check_positive(positive)
    if answer.answer == UNSURE:
        return RATING_UNSURE
    if answer.confidence is None:
        raise ParameterError(
            f"answer of reader {answer.reader!r} on case {answer.case!r} has no "
            "confidence; a rating needs a confidence on every real/synthetic "
            "answer"
        )
    sign = 1 if answer.answer == positive else -1
    return RATING_UNSURE + sign * int(answer.confidence)


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


def _kappa(labels_a: Sequence[str], labels_b: Sequence[str], name_a: str, name_b: str) -> PairKappa:
    """Cohen's kappa of two label lists over :data:`CATEGORIES`, via statsmodels."""
    n_cases = len(labels_a)
    if n_cases == 0:
        return PairKappa(name_a, name_b, 0, math.nan, math.nan, math.nan, math.nan)
    table = confusion_matrix(labels_a, labels_b, labels=list(CATEGORIES))
    agreement = float(np.trace(table) / n_cases)
    chance = float(table.sum(axis=1) @ table.sum(axis=0)) / n_cases**2
    if chance >= 1.0:  # both gave one and the same answer throughout: kappa is 0 / 0
        return PairKappa(name_a, name_b, n_cases, math.nan, math.nan, math.nan, agreement)
    result = cohens_kappa(table)
    bounds = (float(result.kappa), float(result.kappa_low), float(result.kappa_upp))
    return PairKappa(name_a, name_b, n_cases, *bounds, agreement)


def _answers_by_reader(answers: Iterable[Answer]) -> dict[str, dict[str, str]]:
    """``{reader: {case: answer}}`` of the first readings."""
    by_reader: dict[str, dict[str, str]] = {}
    for item in _first_readings(answers):
        by_reader.setdefault(item.reader, {})[item.case] = item.answer
    return by_reader


def cohen_kappa_pairs(answers: Iterable[Answer]) -> list[PairKappa]:
    """Cohen's kappa for every pair of readers, on the cases both read (first reading).

    Unsure is a third category (agreeing on unsure is agreement). Kappa and its bounds are
    NaN when the pair shares no case or both gave the same single answer throughout.

    Args:
        answers: Answers of any number of readers; fewer than two gives an empty list.
    """
    by_reader = _answers_by_reader(answers)
    pairs = []
    for name_a, name_b in itertools.combinations(sorted(by_reader), 2):
        shared = sorted(set(by_reader[name_a]) & set(by_reader[name_b]))
        labels_a, labels_b = ([by_reader[n][c] for c in shared] for n in (name_a, name_b))
        pairs.append(_kappa(labels_a, labels_b, name_a, name_b))
    return pairs


def fleiss_kappa_all(answers: Iterable[Answer]) -> float | None:
    """Fleiss' kappa of all readers over the cases every reader read (first reading).

    Categories are real, synthetic and unsure. Returns None with fewer than two readers or no
    case read by all; NaN when every answer is the same category (kappa is 0 / 0).

    Args:
        answers: Answers of any number of readers.
    """
    by_reader = _answers_by_reader(answers)
    if len(by_reader) < 2:
        return None
    shared = sorted(set.intersection(*(set(cases) for cases in by_reader.values())))
    if not shared:
        return None
    codes = np.array(
        [[CATEGORIES.index(by_reader[r][c]) for r in sorted(by_reader)] for c in shared]
    )
    table, _ = aggregate_raters(codes, n_cat=len(CATEGORIES))
    if np.count_nonzero(table.sum(axis=0)) == 1:
        return math.nan
    return float(fleiss_kappa(table, method="fleiss"))


def intra_reader_kappa(answers: Iterable[Answer]) -> dict[str, PairKappa]:
    """Cohen's kappa of each reader's first (repeat 0) against second (repeat 1) reading.

    Only readers with at least one repeated case appear; ``reader_a == reader_b``.

    Args:
        answers: Answers including second readings.
    """
    answers = list(answers)
    _first_readings(answers)  # consistency checks
    reading: dict[tuple[str, str, int], str] = {
        (item.reader, item.case, item.repeat): item.answer for item in answers
    }
    result = {}
    for reader in sorted({item.reader for item in answers if item.repeat == 1}):
        cases = sorted(
            c for (r, c, rep) in reading if r == reader and rep == 1 and (r, c, 0) in reading
        )
        if cases:
            first, second = ([reading[(reader, c, rep)] for c in cases] for rep in (0, 1))
            result[reader] = _kappa(first, second, reader, reader)
    return result


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
