"""The producer's composition root: `create_app(settings, publisher=...)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline

from common.logging import get_logger
from producer.admin import admin_page, admin_router
from producer.api import probes, router
from producer.auth import KeyRing
from producer.batch_api import batch_router
from producer.contract import contract_router, load_contract
from producer.errors import add_error_responses
from producer.gate import AuthenticateFirst
from producer.idempotency import Idempotent
from producer.limits import BodySizeLimit
from producer.metrics import (
    CONTENT_TYPE_LATEST,
    MeasuredPublisher,
    ProducerMetrics,
    RequestCounter,
)
from producer.publisher import BrokerPublisher, NoPublisher, Publisher
from producer.schemas import document_priorities
from producer.settings import ProducerSettings
from producer.state import AppState
from producer.status import ProducerStatus
from producer.status_api import status_router

__all__ = ["create_app"]

_log = get_logger("hopline.producer")


def create_app(
    settings: ProducerSettings,
    *,
    publisher: Publisher | None = None,
    status: ProducerStatus | None = None,
) -> FastAPI:
    """Wire the app; `publisher` and `status` are the seams tests use (default: the real
    broker, and the store, events and recorder HOPLINE_STATUS_* set up; with only a
    `publisher` given, no status at all)."""
    ingestion = settings.serve in ("all", "ingestion")
    admin = settings.serve in ("all", "admin") and settings.admin_token is not None
    chosen: Publisher = publisher or (BrokerPublisher(settings) if ingestion else NoPublisher())
    if status is None:
        status = (
            ProducerStatus() if publisher is not None else ProducerStatus.from_settings(settings)
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ingestion and not settings.api_keys:
            _log.warning(
                "ingestion.open",
                detail="no HOPLINE_API_KEYS: anyone who reaches this port may publish",
            )
        await chosen.start()
        await status.start()
        try:
            yield
        finally:
            await status.close()
            await chosen.close()

    # The docs' JavaScript and CSS come from the package, not a CDN: /docs works offline.
    app = FastAPIOffline(
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
    keyring = KeyRing(settings.api_keys)
    metrics = ProducerMetrics()
    idempotent = Idempotent(status.store) if status.store is not None else None
    measured = MeasuredPublisher(chosen, metrics)
    AppState(settings, measured, keyring, metrics, status, idempotent).attach(app)
    app.include_router(probes)

    async def metrics_page() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics_page, include_in_schema=False)
    if ingestion:
        app.include_router(router)
        app.include_router(batch_router)
        app.include_router(status_router)
        app.include_router(contract_router(load_contract(settings)))
    if admin:
        # Without a token the admin surface does not exist at all (404), not even its docs.
        app.include_router(admin_router)
        app.add_api_route("/admin", admin_page, include_in_schema=False)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Added last, so it runs first: no body is read for a caller without a valid key.
    app.add_middleware(AuthenticateFirst, keyring=keyring)
    app.add_middleware(RequestCounter, metrics=metrics)  # outermost: counts every answer

    add_error_responses(app, retry_after_s=settings.retry_after_s)
    return app
