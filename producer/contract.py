"""The AMQP contract for other teams: `/asyncapi.json` and a page that renders it offline.

The document comes from `hopline asyncapi --handlers ... --out FILE` (`HOPLINE_ASYNCAPI_FILE`)
rather than from the registries themselves: loading handler modules would make the producer
import the consumer services' code and dependencies. Without the file, the document holds
the ingress contract alone (exchange, routing keys, properties, headers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from common.asyncapi import asyncapi_document
from common.errors import ConfigurationError
from producer.pages import static_page
from producer.settings import ProducerSettings

__all__ = ["contract_router", "load_contract"]

_PAGE = Path(__file__).with_name("static") / "asyncapi.html"


def load_contract(settings: ProducerSettings) -> dict[str, Any]:
    """The document to serve; a missing or unreadable file stops the producer at start."""
    if settings.asyncapi_file is None:
        return asyncapi_document(settings, [])
    path = Path(settings.asyncapi_file)
    try:
        document: Any = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigurationError(
            f"HOPLINE_ASYNCAPI_FILE={path}: cannot read an AsyncAPI document there ({exc}); "
            "write one with `hopline asyncapi --handlers module:registry --out FILE`"
        ) from exc
    if not isinstance(document, dict) or "asyncapi" not in document:
        raise ConfigurationError(f"HOPLINE_ASYNCAPI_FILE={path} is not an AsyncAPI document")
    return document


def contract_router(document: dict[str, Any]) -> APIRouter:
    body = orjson.dumps(document)
    router = APIRouter(tags=["contract"])

    @router.get("/asyncapi.json", summary="The AMQP contract as an AsyncAPI 3.0.0 document")
    async def asyncapi_json() -> Response:
        return Response(body, media_type="application/json")

    @router.get("/asyncapi", include_in_schema=False)
    async def asyncapi_page() -> HTMLResponse:
        return await static_page(_PAGE)

    return router
