"""The producer's composition root: `create_app(settings, publisher=...)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from common.logging import get_logger
from common.settings import ProducerSettings
from producer.admin import admin_page, admin_router
from producer.api import PayloadTooLarge, ServiceUnavailable, router
from producer.auth import Forbidden, KeyRing, RateLimited, Unauthenticated
from producer.limits import BodySizeLimit
from producer.publisher import BrokerPublisher, Publisher
from producer.schemas import document_priorities
from producer.state import AppState

__all__ = ["create_app"]

_log = get_logger("hopline.producer")
# What FastAPI answers (400, undocumented) when a body cannot be decoded, e.g. invalid UTF-8.
_UNPARSEABLE_BODY = "There was an error parsing the body"


def create_app(settings: ProducerSettings, *, publisher: Publisher | None = None) -> FastAPI:
    """Wire the app; `publisher` is the seam tests use (default: the real broker)."""
    chosen: Publisher = publisher or BrokerPublisher(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys:
            _log.warning(
                "ingestion.open",
                detail="no HOPLINE_API_KEYS: anyone who reaches this port may publish",
            )
        await chosen.start()
        try:
            yield
        finally:
            await chosen.close()

    app = FastAPI(
        title="hopline producer",
        version="1.0",
        description="Accepts messages over HTTP and publishes them to RabbitMQ with publisher "
        "confirms: a 202 means the broker has the message.",
        lifespan=lifespan,
    )
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_priorities(default_openapi(), settings.priorities)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    AppState(settings, chosen, KeyRing(settings.api_keys)).attach(app)
    app.include_router(router)
    if settings.admin_token is not None:
        # Without a token the admin surface does not exist at all (404), not even its docs.
        app.include_router(admin_router)
        app.add_api_route("/admin", admin_page, include_in_schema=False)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail},
            status_code=503,
            headers={"Retry-After": str(settings.retry_after_s)},
        )

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_request: Request, exc: Unauthenticated) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(Forbidden)
    async def forbidden(_request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(RateLimited)
    async def rate_limited(_request: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == _UNPARSEABLE_BODY:
            # A body that is not UTF-8 JSON is invalid input like any malformed JSON: 422.
            error = {"type": "json_invalid", "loc": ["body"], "msg": "body is not UTF-8 JSON"}
            return JSONResponse({"detail": [error]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(PayloadTooLarge)
    async def too_large(_request: Request, exc: PayloadTooLarge) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=413)

    return app
