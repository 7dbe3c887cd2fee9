"""HOPLINE_SERVE: the internet-facing ingestion API and the admin API as separate processes."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from producer.app import create_app
from producer.settings import ProducerSettings
from tests.fakes import FakePublisher

TOKEN = "an-admin-token-of-the-test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _paths(serve: str) -> dict[str, int]:
    settings = ProducerSettings(serve=serve, admin_token=SecretStr(TOKEN))  # type: ignore[arg-type]
    app = create_app(settings, publisher=FakePublisher() if serve != "admin" else None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            message = {"type": "orders.created", "payload": {}}
            return {
                "ingest": (await client.post("/v1/messages", json=message)).status_code,
                "admin page": (await client.get("/admin")).status_code,
                "admin api": (await client.get("/v1/admin/nope", headers=AUTH)).status_code,
                "healthz": (await client.get("/healthz")).status_code,
                "readyz": (await client.get("/readyz")).status_code,
            }


async def test_an_ingestion_process_has_no_admin_surface_at_all() -> None:
    paths = await _paths("ingestion")
    assert paths["ingest"] == 202
    assert (paths["admin page"], paths["admin api"]) == (404, 404)
    assert (paths["healthz"], paths["readyz"]) == (200, 200)


async def test_an_admin_process_takes_no_messages_and_declares_nothing() -> None:
    paths = await _paths("admin")
    assert paths["ingest"] in (404, 405)
    assert paths["admin page"] == 200
    assert paths["admin api"] == 404  # a route that does not exist, behind the token check
    assert (paths["healthz"], paths["readyz"]) == (200, 200)
