"""A reader's answer and the conventions every reader-study statistic shares.

See :mod:`syntumor_core.reader_study.statistics` for the conventions (positive class, first
readings, unsure answers); this module holds the record, the answer categories and the 0-10
rating that ROC and MRMC analyses use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from syntumor_core.errors import ParameterError

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
