"""The errors of the reader-study feature; each carries the HTTP status that answers it."""

from __future__ import annotations

from typing import Any


class StudyError(ValueError):
    """A request about a study cannot be done; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class DesignNotAcknowledged(StudyError):
    """The design has warnings the owner did not acknowledge (409), or errors (422)."""

    def __init__(self, message: str, checks: list[dict[str, Any]], status: int) -> None:
        super().__init__(message, status)
        self.checks = checks
