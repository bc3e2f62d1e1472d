"""ASGI middleware of the API: request ids, access log, the 500 catch-all, body limit.

Strategy: pure ASGI classes (no BaseHTTPMiddleware), so they see the raw
``receive``/``send`` channels: the body limit counts the bytes as they arrive
and refuses a chunked upload that never declared its length, and the request
id reaches the response headers of every answer, errors included.

Order, outermost first (`install_middleware`):

0. `cloud.core.security_headers.SecurityHeadersMiddleware`: CSP, framing,
   HSTS, ``Cache-Control: no-store`` for credentialed requests — outermost,
   so the 500 and 413 answers of the two below carry them too;
1. `RequestContextMiddleware`: takes a sane ``X-Request-ID`` from the client
   or makes one, puts it in ``scope["state"]["request_id"]`` and in
   `REQUEST_ID` (a contextvar, so log records of the request can carry it —
   `RequestIdLogFilter`), echoes it in the response, writes one access log
   line, and turns an exception nothing else handled into a problem+json 500
   that shows nothing but the request id;
2. `BodySizeLimitMiddleware`: 413 before the app runs when Content-Length is
   too large; when the body streams in (chunked), the first byte over the
   limit raises `RequestBodyTooLarge`, an HTTPException FastAPI passes through
   to the problem handler.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.core.problems import problem_response

__all__ = [
    "REQUEST_ID",
    "REQUEST_ID_HEADER",
    "BodySizeLimitMiddleware",
    "RequestBodyTooLarge",
    "RequestContextMiddleware",
    "RequestIdLogFilter",
    "install_middleware",
]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("cloud.access")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID: ContextVar[str | None] = ContextVar("voltstack_request_id", default=None)
# What we accept from a client or proxy: short, printable, no spaces or quotes,
# so it can go into a log line or a header without escaping.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


class RequestIdLogFilter(logging.Filter):
    """Adds ``record.request_id`` ("-" outside a request) for log formats to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class RequestBodyTooLarge(HTTPException):
    """The request body grew past the limit while it was being read."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"request body larger than {limit_bytes} bytes")


def _request_id(scope: Scope) -> str:
    offered = Headers(scope=scope).get(REQUEST_ID_HEADER)
    if offered and _SANE_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Request id, access log line and the catch-all 500 (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "request_id=%s unhandled error in %s %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
            )
            if status:
                raise  # the response has started: nothing valid can follow
            response = problem_response(
                scope, 500, detail="internal error; quote the request id to support"
            )
            await response(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "request method=%s path=%s status=%s duration_ms=%.1f request_id=%s client=%s",
                scope.get("method"),
                scope.get("path"),
                status[0] if status else "-",
                (time.perf_counter() - started) * 1000,
                request_id,
                _client(scope),
                extra={"request_id": request_id},
            )
            REQUEST_ID.reset(token)


def _client(scope: Scope) -> str:
    client: Any = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class BodySizeLimitMiddleware:
    """Refuse request bodies over `max_body_bytes` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await problem_response(scope, 400, detail="Content-Length is not a number")(
                    scope, receive, send
                )
                return
            if int(declared) > self.max_body_bytes:
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise RequestBodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except RequestBodyTooLarge:
            # Read outside FastAPI's request handling (a middleware, a raw
            # Starlette route): answer here, as the handler would have.
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            scope, 413, detail=f"request body larger than {self.max_body_bytes} bytes"
        )
        await response(scope, receive, send)


def install_middleware(
    app: FastAPI, *, max_body_bytes: int, docs_paths: frozenset[str] = frozenset()
) -> None:
    """Add the middleware in the order the module docstring gives.

    Args:
        docs_paths: the API viewer pages, which get the looser CSP they need.
    """
    from cloud.core.security_headers import SecurityHeadersMiddleware

    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=docs_paths)
