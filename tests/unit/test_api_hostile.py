"""Hostile requests found by fuzzing the ingestion API: each is a 4xx, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from producer.app import create_app
from producer.settings import ProducerSettings
from tests.fakes import FakePublisher


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ProducerSettings(), publisher=publisher)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_an_invalid_utf8_body_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages",
        content=b'{"type": "a.b", "payload": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "body is not UTF-8 JSON"


async def test_an_integer_beyond_64_bits_is_published_exactly(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post("/v1/messages", json={"type": "a.b", "payload": 2**80})
    assert response.status_code == 202
    assert publisher.published[0][1].body == str(2**80).encode()


async def test_a_lone_surrogate_in_the_payload_is_a_422(client: httpx.AsyncClient) -> None:
    body = b'{"type": "a.b", "payload": "\\udad5"}'
    response = await client.post(
        "/v1/messages", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "cannot be encoded as UTF-8 JSON" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("field", ["message_id", "correlation_id"])
async def test_ids_longer_than_an_amqp_short_string_are_a_422(
    client: httpx.AsyncClient, field: str
) -> None:
    # 255 characters, 510 bytes: AMQP short strings hold 255 bytes.
    response = await client.post(
        "/v1/messages", json={"type": "a.b", "payload": 1, field: "é" * 255}
    )
    assert response.status_code == 422


async def test_headers_that_would_not_fit_in_one_amqp_frame_are_a_422(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    headers = {f"h{i}": "漢" * 4096 for i in range(64)}
    response = await client.post(
        "/v1/messages", json={"type": "a.b", "payload": 1, "headers": headers}
    )
    assert response.status_code == 422
    assert publisher.published == []


async def test_the_schema_lists_the_configured_priorities(client: httpx.AsyncClient) -> None:
    schema = orjson.loads((await client.get("/openapi.json")).content)
    priority = schema["components"]["schemas"]["MessageIn"]["properties"]["priority"]
    assert priority["enum"] == ["high", "normal", "low"]
