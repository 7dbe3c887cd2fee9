"""Our errors as HTTP answers: one table from exception to status, headers and body.

ServiceUnavailable  503 + Retry-After   the broker is away or did not confirm
Unauthenticated     401 + WWW-Authenticate
Forbidden           403                 the key may not publish this type or priority
RateLimited         429 + Retry-After   the key is over its rate
PayloadTooLarge     413
HTTPException       as FastAPI answers it, except an undecodable body: 422 like any
                    malformed JSON (FastAPI's own answer is an undocumented 400)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from producer.auth import Forbidden, RateLimited, Unauthenticated
from producer.idempotency import IdempotencyConflict, IdempotencyInFlight
from producer.ingest import PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType

__all__ = ["add_error_responses"]

# What FastAPI answers (400, undocumented) when a body cannot be decoded, e.g. invalid UTF-8.
_UNPARSEABLE_BODY = "There was an error parsing the body"


def add_error_responses(app: FastAPI, *, retry_after_s: int) -> None:
    """Register the exception handlers; `retry_after_s` is the Retry-After of a 503."""

    async def unavailable(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceUnavailable)
        return JSONResponse(
            {"detail": exc.detail}, status_code=503, headers={"Retry-After": str(retry_after_s)}
        )

    async def unauthenticated(_request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def forbidden(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    async def rate_limited(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        return JSONResponse(
            {"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after_s)}
        )

    async def too_large(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PayloadTooLarge)
        return JSONResponse({"detail": exc.detail}, status_code=413)

    async def unsupported(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UnsupportedMediaType)
        return JSONResponse({"detail": exc.detail}, status_code=415)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400 and exc.detail == _UNPARSEABLE_BODY:
            error = {"type": "json_invalid", "loc": ["body"], "msg": "body is not UTF-8 JSON"}
            return JSONResponse({"detail": [error]}, status_code=422)
        return await http_exception_handler(request, exc)

    async def key_conflict(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def key_in_flight(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409, headers={"Retry-After": "1"})

    app.add_exception_handler(ServiceUnavailable, unavailable)
    app.add_exception_handler(IdempotencyConflict, key_conflict)
    app.add_exception_handler(IdempotencyInFlight, key_in_flight)
    app.add_exception_handler(Unauthenticated, unauthenticated)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(RateLimited, rate_limited)
    app.add_exception_handler(PayloadTooLarge, too_large)
    app.add_exception_handler(UnsupportedMediaType, unsupported)
    app.add_exception_handler(HTTPException, http_error)
