"""The one error shape every API failure answers with, and the middleware that enforces it.

Flatpeak clients parse `{object: "error", type, code, message}`; a handler raises `ApiError` and
never builds a response itself, so a stack trace or an HTML error page can never leak out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

import asyncpg
from aiohttp import web
from aiokafka.errors import KafkaError

from meterflow import metrics
from meterflow.api.context import CONTEXT
from meterflow.models import dumps

log = logging.getLogger("meterflow.api")

JSON = "application/json"

_TYPES = {
    400: "invalid_request",
    401: "authentication_error",
    403: "authentication_error",
    404: "invalid_request",
    405: "invalid_request",
    409: "invalid_request",
    413: "invalid_request",
    422: "invalid_request",
    429: "rate_limit",
    503: "api_error",
}


class ApiError(Exception):
    """An answer that is not a success: status, machine code and a message for humans."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "object": "error",
        "type": _TYPES.get(status, "api_error"),
        "code": code,
        "message": message,
    }
    return web.Response(status=status, body=dumps(body), content_type=JSON, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def not_ready() -> ApiError:
    """The view of locations and market prices is still being read (`/readyz`): retry soon."""
    return ApiError(
        503,
        "not_ready",
        "the API is still reading the locations and market prices; retry shortly",
        headers=_RETRY,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "method not allowed on this endpoint"),
    413: ("body_too_large", "request body is larger than the limit"),
}


_UNREACHABLE = (
    ConnectionRefusedError,  # nothing listens (the broker's failures are KafkaErrors)
    TimeoutError,  # no answer within MF_DATABASE_STATEMENT_TIMEOUT_S (the pool's command_timeout)
    asyncpg.InterfaceError,  # a connection lost mid-query
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)
"""A database the handler could not reach: 503 `database_unavailable`, counted in
`meterflow_database_errors_total{operation="request"}` (so is any other PostgreSQL error, a
500)."""
_RETRY = {"Retry-After": "5"}

_KEPT_HEADERS = ("Allow",)
"""Headers of aiohttp's own HTTP errors that carry meaning and survive into the error object."""


def _check_url(request: web.Request) -> None:
    """PostgreSQL text holds neither NUL nor unpaired surrogates: refuse them at the door, as
    a 400, rather than as a database error. Nor a path whose escapes are not UTF-8: the path
    keeps `%FF%FE` as it is, so `/locations/%FF%FE` made a location named `%FF%FE`, which
    `/locations/%25FF%25FE` reached too."""
    try:
        unquote_to_bytes(request.raw_path.partition("?")[0]).decode()
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "the URL is not valid UTF-8") from None
    for text in (request.path, *request.query.keys(), *request.query.values()):
        if "\x00" in text:
            raise ApiError(400, "invalid_request", "NUL characters are not allowed in URLs")
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ApiError(400, "invalid_request", "the URL is not valid UTF-8") from None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the error object; unexpected ones into a logged, generic 500."""
    try:
        _check_url(request)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        if exc.status == 413:
            limit = request.app[CONTEXT].settings.api_max_body_bytes
            message = f"request body is larger than {limit} bytes"
        # RFC 9110: a 405 lists the methods the resource does allow (aiohttp computed them)
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return error_response(exc.status, code, message, kept or None)
    except KafkaError as exc:  # the broker did not take what the request publishes
        log.warning(
            "broker unavailable answering request",
            extra={"method": request.method, "path": request.path, "error": repr(exc)[:300]},
        )
        return error_response(
            503, "broker_unavailable", "the broker is unavailable; retry later", _RETRY
        )
    except _UNREACHABLE as exc:  # the database down, restarting or out of connections
        metrics.database_error("request")
        log.warning(
            "database unavailable answering request",
            extra={"method": request.method, "path": request.path, "error": repr(exc)[:300]},
        )
        return error_response(
            503, "database_unavailable", "the database is unavailable; retry later", _RETRY
        )
    except Exception as exc:
        if isinstance(exc, asyncpg.PostgresError):
            metrics.database_error("request")
        log.exception(
            "unhandled error answering request",
            extra={"method": request.method, "path": request.path},
        )
        return error_response(500, "internal_error", "internal error; the request was logged")
