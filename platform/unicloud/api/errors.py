"""Every error leaves the API as `{"error": "<message>"}` with a meaningful status, never a trace."""

from __future__ import annotations

import logging

import redis
from sqlalchemy.exc import IntegrityError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from unicloud.services import ServiceError

log = logging.getLogger("unicloud.api")


class Unavailable(ServiceError):
    """A capability whose component is not installed or not running."""

    status = 501


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _location(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error") or "JSON decode error"
            return 400, f"malformed JSON in request body: {detail}"
    msgs = []
    for err in errors[:5]:
        where = _location(err.get("loc", ()))
        msg = err.get("msg", "invalid value")
        if err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",):
            msgs.append("a JSON request body is required")
        else:
            msgs.append(f"{where}: {msg}")
    return 422, "invalid request: " + "; ".join(msgs)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        status, message = validation_message(exc)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(redis.RedisError)
    async def _redis_error(request: Request, exc: redis.RedisError):
        return error_response(503, f"the platform's Redis is unreachable: {exc}")

    @app.exception_handler(IntegrityError)
    async def _integrity_error(request: Request, exc: IntegrityError):
        # Two changes raced for the same unique value (e.g. the next release number): safe to retry.
        log.warning("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(409, "a concurrent change got there first; retry the request")

    @app.exception_handler(OperationalError)
    async def _db_busy(request: Request, exc: OperationalError):
        log.warning("database error on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(503, f"the platform database is unavailable or busy ({exc.orig}); retry shortly")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the api process log")
