"""One error format for the whole API: RFC 9457 problem details (problem+json).

Strategy: every error a client sees — a domain error, a validation error, an
HTTP error raised by FastAPI or Starlette, an oversized or mistyped body, a
bug — leaves through `problem_response`, with the same members:

    {"type": "urn:voltstack:problem:gateway-not-found", "title": "Not Found",
     "status": 404, "detail": "gateway 'gw-9' is not registered",
     "instance": "/api/v1/gateways/gw-9", "request_id": "3f2c…"}

plus ``errors`` (the field errors) on 422 validation problems. Domain errors
are translated here and only here (STYLE.md: "domain errors become HTTP
errors in routers only" — this is the routers' shared translation): the
category of `cloud.core.exceptions` decides the status, the domain message is
the detail, the class name the type. Server-side failures (503, 500) never
show their message: it may name hosts, URLs or SQL; it is logged with the
request id instead, and the client gets the id to quote.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.core.exceptions import (
    CloudError,
    Conflict,
    DatabaseError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_TYPE_PREFIX",
    "FieldError",
    "Problem",
    "ProblemResponses",
    "install_problem_handlers",
    "problem_content",
    "problem_doc",
    "problem_response",
    "request_id_of",
    "status_of",
]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:voltstack:problem:"

# The one place where a domain category becomes an HTTP status. Order matters:
# the first category an error belongs to wins.
_STATUS_BY_CATEGORY: tuple[tuple[type[CloudError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (DatabaseError, 503),
)
_RETRY_AFTER_S = "5"


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int]
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error response of the API carries it."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI `responses=` entry for a problem+json answer."""
    return {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": description}


# For `responses=` in route declarations, so OpenAPI documents the error format.
ProblemResponses: dict[int | str, dict[str, Any]] = {
    status: problem_doc(phrase)
    for status, phrase in (
        (400, "Malformed request: a body that cannot be parsed, a bad Content-Length"),
        (401, "Not authenticated"),
        (403, "Not allowed"),
        (404, "Not found"),
        (422, "Invalid request"),
        (503, "A backing store is unavailable"),
    )
}


def request_id_of(scope_or_request: Any) -> str | None:
    """The request id that `RequestContextMiddleware` assigned, if any."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    state = scope.get("state") or {}
    return state.get("request_id") if isinstance(state, dict) else None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem_content(
    scope: Any,
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    type_: str = "about:blank",
    **extensions: Any,
) -> dict[str, Any]:
    """The problem document for `scope` (an ASGI scope or a Request)."""
    scope = getattr(scope, "scope", scope)
    document: dict[str, Any] = {
        "type": type_,
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "instance": scope.get("path"),
        "request_id": request_id_of(scope),
    }
    document.update({key: value for key, value in extensions.items() if value is not None})
    return document


def problem_response(
    scope: Any,
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response; see the module docstring for the members."""
    content = problem_content(scope, status, detail=detail, title=title, type_=type_, **extensions)
    return JSONResponse(
        content, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def status_of(error: CloudError) -> int:
    """The HTTP status of a domain error (500 for an uncategorised one)."""
    for category, status in _STATUS_BY_CATEGORY:
        if isinstance(error, category):
            return status
    return 500


async def _cloud_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CloudError)
    status = status_of(error)
    type_ = PROBLEM_TYPE_PREFIX + _slug(type(error).__name__)
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="voltstack"'}
        return problem_response(request, status, detail=str(error), type_=type_, headers=headers)
    if status < 500:
        return problem_response(request, status, detail=str(error), type_=type_)
    # Store and database messages name servers and statements: log, do not show.
    logger.error(
        "request_id=%s %s %s failed: %s: %s",
        request_id_of(request),
        request.method,
        request.url.path,
        type(error).__name__,
        error,
    )
    if status == 503:
        return problem_response(
            request,
            503,
            detail="a backing store is unavailable; try again later",
            type_=PROBLEM_TYPE_PREFIX + "store-unavailable",
            headers={"Retry-After": _RETRY_AFTER_S},
        )
    return problem_response(request, 500, detail="internal error; quote the request id")


async def _database_down(request: Request, error: Exception) -> JSONResponse:
    logger.error(
        "request_id=%s %s %s: operational database unavailable: %s",
        request_id_of(request),
        request.method,
        request.url.path,
        str(error).splitlines()[0] if str(error) else type(error).__name__,
    )
    return problem_response(
        request,
        503,
        detail="the database is unavailable; try again later",
        type_=PROBLEM_TYPE_PREFIX + "database-unavailable",
        headers={"Retry-After": _RETRY_AFTER_S},
    )


def _field_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in item.get("loc", ())],
            "message": str(item.get("msg", "")),
            "type": str(item.get("type", "")),
        }
        for item in error.errors()
    ]


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = _field_errors(error)
    summary = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['message']}" for item in errors[:5]
    )
    return problem_response(
        request,
        422,
        detail=summary or "the request is invalid",
        type_=PROBLEM_TYPE_PREFIX + "validation-error",
        errors=errors,
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    phrase = _phrase(status)
    detail = error.detail if isinstance(error.detail, str) and error.detail != phrase else None
    return problem_response(request, status, detail=detail, title=phrase, headers=error.headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json.

    The catch-all for unexpected exceptions (500) is `RequestContextMiddleware`
    (cloud.core.middleware): it sits outside these handlers and knows the
    request id.
    """
    app.add_exception_handler(CloudError, _cloud_error)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
