"""How often readers called each arm's cases real, and whether two arms differ.

A study's two arms need not be "real" against "synthetic": two generator profiles (both
synthetic) can be compared by how often each fooled the readers. These functions work on any
arms: they take the answers and a mapping from case to arm name.

Example:
    >>> from syntumor_core.reader_study.statistics import Answer
    >>> answers = [Answer("r1", "c1", truth="synthetic", answer="real"),
    ...            Answer("r1", "c2", truth="synthetic", answer="synthetic")]
    >>> rates = arm_rates(answers, {"c1": "paper", "c2": "realistic"})
    >>> rates["paper"].called_real.value
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scipy.stats import fisher_exact

from syntumor_core.errors import ParameterError
from syntumor_core.reader_study.statistics import (
    REAL,
    SYNTHETIC,
    UNSURE,
    Answer,
    Proportion,
    _first_readings,
    wilson_proportion,
)


@dataclass(frozen=True)
class ArmRates:
    """Answers on one arm's cases (first readings), each share with its 95 % Wilson interval.

    ``called_real`` and ``called_synthetic`` count unsure answers in the denominator;
    ``called_real_definite`` leaves them out (real / (real + synthetic)).
    """

    arm: str
    n_answers: int
    called_real: Proportion
    called_synthetic: Proportion
    unsure: Proportion
    called_real_definite: Proportion


def _by_arm(answers: Iterable[Answer], arm_of_case: Mapping[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for item in _first_readings(answers):
        if item.case not in arm_of_case:
            raise ParameterError(f"case {item.case!r} has no arm in `arm_of_case`")
        grouped.setdefault(arm_of_case[item.case], []).append(item.answer)
    return grouped


def arm_rates(answers: Iterable[Answer], arm_of_case: Mapping[str, str]) -> dict[str, ArmRates]:
    """Share of first readings called real, synthetic and unsure, per arm.

    Args:
        answers: Answers of any number of readers.
        arm_of_case: Arm name of every answered case.

    Returns:
        ``{arm: ArmRates}`` in the order arms first appear in ``arm_of_case``.
    """
    grouped = _by_arm(answers, arm_of_case)
    result = {}
    for arm in dict.fromkeys(arm_of_case.values()):
        given = grouped.get(arm, [])
        real, synthetic = given.count(REAL), given.count(SYNTHETIC)
        result[arm] = ArmRates(
            arm=arm,
            n_answers=len(given),
            called_real=wilson_proportion(real, len(given)),
            called_synthetic=wilson_proportion(synthetic, len(given)),
            unsure=wilson_proportion(given.count(UNSURE), len(given)),
            called_real_definite=wilson_proportion(real, real + synthetic),
        )
    return result


def arm_comparison(
    answers: Iterable[Answer], arm_of_case: Mapping[str, str]
) -> dict[str, object] | None:
    """Fisher's exact test: were the two arms' cases called real equally often?

    The 2×2 table is arm × (called real, called synthetic) over first readings, unsure left
    out. Readers and repeated cases are pooled as if independent, so the p-value is a screening
    number, not a multi-reader analysis (use the MRMC export for that).

    Args:
        answers: Answers of any number of readers.
        arm_of_case: Arm name of every case; exactly two arms.

    Returns:
        ``{"arms", "table", "odds_ratio", "p_value"}``; None unless there are exactly two arms.
        The odds ratio is NaN when a row or column of the table is empty.
    """
    arms = list(dict.fromkeys(arm_of_case.values()))
    if len(arms) != 2:
        return None
    grouped = _by_arm(answers, arm_of_case)
    table = [[grouped.get(arm, []).count(REAL), grouped.get(arm, []).count(SYNTHETIC)]
             for arm in arms]  # fmt: skip
    if min(sum(row) for row in table) == 0 or min(map(sum, zip(*table, strict=True))) == 0:
        return {"arms": arms, "table": table, "odds_ratio": math.nan, "p_value": math.nan}
    odds_ratio, p_value = fisher_exact(table)
    return {
        "arms": arms,
        "table": table,
        "odds_ratio": float(odds_ratio),
        "p_value": float(p_value),
    }
