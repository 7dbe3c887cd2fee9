"""Ingestion API keys: hashed, scoped to types and priorities, rate limited per key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from common.apikeys import ApiKeySpec, hash_key, new_key
from producer.app import create_app
from producer.auth import KeyRing, TokenBucket
from producer.settings import ProducerSettings
from tests.fakes import FakePublisher

BILLING_KEY = new_key()
ADMIN_KEY = new_key()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=4, clock=clock)
    assert bucket.take(4) == 0.0
    assert bucket.take(1) == pytest.approx(0.5)
    clock.now += 1.0
    assert bucket.take(2) == 0.0
    assert bucket.take(1) > 0


def test_keys_are_recognised_by_their_hash_only() -> None:
    ring = KeyRing([ApiKeySpec(name="billing", sha256=hash_key(BILLING_KEY))])
    key = ring.authenticate(f"Bearer {BILLING_KEY}")
    assert key is not None and key.name == "billing"
    assert BILLING_KEY not in repr(ring.__dict__)


def _settings() -> ProducerSettings:
    return ProducerSettings(
        api_keys=[
            ApiKeySpec(
                name="billing",
                sha256=hash_key(BILLING_KEY),
                types=["invoices.*"],
                priorities=["normal", "low"],
                rate_per_s=1.0,
                burst=3,
            ),
            ApiKeySpec(name="ops", sha256=hash_key(ADMIN_KEY)),
        ]
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_settings(), publisher=FakePublisher())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def _post(client: httpx.AsyncClient, key: str | None, **message: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"type": "invoices.paid", "payload": {}, **message}
    return await client.post("/v1/messages", json=body, headers=headers)


async def test_no_key_or_an_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    missing = await _post(client, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    unknown = await _post(client, "hpl_not-a-key")
    assert (unknown.status_code, unknown.json()["detail"]) == (401, "unknown API key")


async def test_a_key_outside_its_types_or_priorities_is_403(client: httpx.AsyncClient) -> None:
    wrong_type = await _post(client, BILLING_KEY, type="orders.created")
    assert wrong_type.status_code == 403
    assert "may not publish type 'orders.created'" in wrong_type.json()["detail"]
    wrong_priority = await _post(client, BILLING_KEY, priority="high")
    assert wrong_priority.status_code == 403
    assert "priority 'high'" in wrong_priority.json()["detail"]


async def test_a_key_over_its_rate_gets_429_with_retry_after(client: httpx.AsyncClient) -> None:
    statuses = [(await _post(client, BILLING_KEY)).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = await _post(client, BILLING_KEY)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    # Another key has its own bucket
    assert (await _post(client, ADMIN_KEY, type="orders.created")).status_code == 202


async def test_a_batch_over_the_burst_is_refused_whole(client: httpx.AsyncClient) -> None:
    batch = {"messages": [{"type": "invoices.paid", "payload": {}}] * 4}
    response = await client.post(
        "/v1/messages/batch", json=batch, headers={"Authorization": f"Bearer {BILLING_KEY}"}
    )
    assert response.status_code == 403
    assert "at most 3 messages at once" in response.json()["detail"]


async def test_keys_never_reach_the_logs(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        await _post(client, BILLING_KEY)
        await _post(client, "hpl_wrong-key-123")
    assert BILLING_KEY not in repr(logs)
    assert "hpl_wrong-key-123" not in repr(logs)


async def test_without_keys_the_api_is_open_and_says_so_once() -> None:
    app = create_app(ProducerSettings(), publisher=FakePublisher())
    with capture_logs() as logs:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/v1/messages", json={"type": "a.b", "payload": 1})
                assert response.status_code == 202
    warnings = [entry for entry in logs if entry["event"] == "ingestion.open"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"


async def test_a_caller_without_a_key_is_refused_before_its_body_is_read() -> None:
    # Given the app behind an ASGI channel that counts the body chunks it hands out
    app = create_app(_settings(), publisher=FakePublisher())
    chunks_read = 0
    deep = b"[" * 100_000 + b"]" * 100_000  # would be a 422 (too deep) if it were parsed

    async def receive() -> dict[str, object]:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": deep, "more_body": False}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    async with app.router.lifespan_context(app):
        # When it posts without a key
        await app(scope, receive, send)  # type: ignore[arg-type]
    # Then the answer is 401, and not one chunk of the body was read
    assert sent[0]["status"] == 401
    assert chunks_read == 0
