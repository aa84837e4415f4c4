"""Agreement: Cohen's kappa between readers (and between one reader's two readings), Fleiss'
kappa over all readers, via statsmodels. Only first readings count between readers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa

from syntumor_core.reader_study.answers import CATEGORIES, Answer, _first_readings


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
