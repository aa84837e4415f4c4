"""One error family for the whole app, and the one error body every JSON error is sent as.

A service raises an :class:`AppError` subclass (``NotFound("volume 3 not found")``); the app
maps it to a response once (:func:`app.main.error_response`): JSON ``{"detail", "code"}`` (plus
``errors`` for a request that failed validation) for programs, the error page for browsers.
Framework errors (an unknown path, a wrong method, a body that fails validation) are sent in
the same body. Routes list what they can answer with :func:`error_responses`, so the OpenAPI
document names every status and its schema.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field


class AppError(Exception):
    """An error a client can act on: HTTP ``status``, a ``detail`` for a person, a ``code`` for
    a program. Subclasses fix the status and code; ``code`` may be refined per raise."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers
        self.extra = extra or {}


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class Gone(AppError):
    status, code = 410, "gone"


class TooLarge(AppError):
    status, code = 413, "too_large"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class Invalid(AppError):
    status, code = 422, "invalid"


class TooManyRequests(AppError):
    status, code = 429, "too_many_requests"


class Unavailable(AppError):
    status, code = 503, "unavailable"


def error_for_status(status: int, detail: str, **kwargs: Any) -> AppError:
    """The :class:`AppError` of ``status`` (for a lower layer's error that carries a status,
    e.g. an upload refused with 415)."""
    family = (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, TooLarge,
              UnsupportedMediaType, Invalid, TooManyRequests, Unavailable)  # fmt: skip
    for kind in family:
        if kind.status == status:
            return kind(detail, **kwargs)
    return AppError(detail, status=status, code=kwargs.pop("code", None) or code_for_status(status),
                    **kwargs)  # fmt: skip


def code_for_status(status: int) -> str:
    """The ``code`` of an error that carries none (framework errors): the status's name."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class FieldError(BaseModel):
    """One reason a request failed validation."""

    loc: list[str | int] = Field(description="Where: e.g. ['body', 'title'] or ['query', 'limit'].")
    msg: str = Field(description="What is wrong, for a person.")
    type: str = Field(description="pydantic's error type, e.g. 'missing' or 'greater_than'.")


class ErrorBody(BaseModel):
    """The body of every JSON error answer (4xx and 5xx)."""

    detail: str = Field(description="What went wrong and what to do, for a person.")
    code: str = Field(description="A stable name for programs, e.g. 'not_found', 'invalid'.")
    errors: list[FieldError] | None = Field(
        None, description="For a request that failed validation (422): each failing field."
    )


DESCRIPTIONS = {
    400: "The request cannot be done as asked.",
    401: "Not logged in: no session cookie and no valid bearer token.",
    403: "Logged in, but this needs another role (or the CSRF header is missing).",
    404: "No such thing, or not yours to see.",
    409: "It conflicts with the current state (e.g. a job that already finished).",
    410: "It existed but is gone (e.g. a withdrawn invitation).",
    413: "The upload is larger than the server accepts.",
    415: "The media type is not accepted.",
    422: "The request failed validation; `errors` names each field.",
    429: "Too many attempts; retry after the seconds in `Retry-After`.",
    503: "The server cannot do this now.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of a route for ``statuses``, all with :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": DESCRIPTIONS.get(status, "Error.")}
        for status in statuses
    }


def json_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """:func:`error_responses` for a route whose own answer is not JSON (a stream, a file with
    a ``response_class`` of its media type): FastAPI would give a ``model`` response the route's
    media type, so the JSON content is named here (ErrorBody is in the components by the
    routes using :func:`error_responses`)."""
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        status: {
            "description": DESCRIPTIONS.get(status, "Error."),
            "content": {"application/json": {"schema": schema}},
        }
        for status in statuses
    }


# What every route behind the auth dependencies can answer: 401 (not logged in, or a wrong
# token), 403 (another role needed, or a browser session's missing CSRF header) and 429 (too
# many wrong tokens from the address).
CALLER_STATUSES = (401, 403, 429)

# What most routes share: logged in (401), a role (403), a body or query that validates (422).
AUTH_ERRORS = error_responses(401, 403, 422)
