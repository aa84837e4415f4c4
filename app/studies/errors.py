"""The errors of the reader-study feature: :class:`StudyError` is an :class:`~app.errors.AppError`
whose status (404, 409, 410, 422, …) is chosen per raise; the app answers it with the one error
body (``{"detail", "code"}``; a refused design adds its ``checks``)."""

from __future__ import annotations

from typing import Any

from app.errors import AppError

CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "gone",
    422: "invalid",
    429: "too_many_requests",
}


class StudyError(AppError, ValueError):
    """A request about a study cannot be done; ``status`` is the HTTP status to answer.

    Still a ``ValueError`` for the pages and the command line, which catch it as one."""

    def __init__(
        self,
        message: str,
        status: int = 422,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code or CODES.get(status, "error"),
                         extra=extra)  # fmt: skip


class DesignNotAcknowledged(StudyError):
    """The design has warnings the owner did not acknowledge (409), or errors (422); the
    answer carries every ``checks`` beside the ``detail``."""

    def __init__(self, message: str, checks: list[dict[str, Any]], status: int) -> None:
        code = "design_not_acknowledged" if status == 409 else "design_not_blindable"
        super().__init__(message, status, code=code, extra={"checks": checks})
        self.checks = checks
