"""Scheduling through the HTTP API: `delay_s` or `deliver_at`, bounds checked as 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from common import headers as h
from common.delays import MAX_DELAY_S
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


def _problems(response: httpx.Response) -> list[tuple[str, str]]:
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in response.json()["detail"]]


async def test_a_message_with_delay_s_is_published_delayed_and_says_when_it_is_due(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    before = datetime.now(UTC)

    response = await client.post(
        "/v1/messages", json={"type": "orders.created", "payload": {}, "delay_s": 90}
    )

    assert response.status_code == 202, response.text
    due = datetime.fromisoformat(response.json()["deliver_at"])
    assert before + timedelta(seconds=90) <= due <= datetime.now(UTC) + timedelta(seconds=90)
    [(routing_key, message)] = publisher.published
    assert routing_key == "normal.orders.created"  # the publisher adds the delay's bits
    assert 89 < (publisher.delays[message.message_id or ""] or 0) <= 90
    assert message.headers[h.DELIVER_AT] == due.isoformat()


async def test_a_message_with_deliver_at_is_due_then(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)

    response = await client.post(
        "/v1/messages",
        json={"type": "orders.created", "payload": {}, "deliver_at": due.isoformat()},
    )

    assert response.status_code == 202, response.text
    assert datetime.fromisoformat(response.json()["deliver_at"]) == due
    [(_, message)] = publisher.published
    assert 7199 < (publisher.delays[message.message_id or ""] or 0) <= 7200


async def test_a_message_without_a_schedule_is_published_now(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post("/v1/messages", json={"type": "orders.created", "payload": {}})

    assert response.json()["deliver_at"] is None
    [(_, message)] = publisher.published
    assert publisher.delays[message.message_id or ""] is None
    assert h.DELIVER_AT not in (message.headers or {})


@pytest.mark.parametrize(
    ("schedule", "where", "fragment"),
    [
        ({"delay_s": -1}, "body.delay_s", "greater than or equal to 0"),
        ({"delay_s": MAX_DELAY_S + 1}, "body.delay_s", f"less than or equal to {MAX_DELAY_S}"),
        ({"delay_s": "5"}, "body.delay_s", "valid number"),
        ({"deliver_at": "2001-01-01T00:00:00Z"}, "body.deliver_at", "is in the past"),
        ({"deliver_at": "2999-01-01T00:00:00Z"}, "body.deliver_at", "longer than the longest"),
        ({"deliver_at": "2030-01-01T00:00:00"}, "body.deliver_at", "timezone"),
        ({"delay_s": 5, "deliver_at": "2030-01-01T00:00:00Z"}, "body", "not both"),
    ],
)
async def test_a_schedule_that_cannot_be_kept_is_422_and_publishes_nothing(
    client: httpx.AsyncClient,
    publisher: FakePublisher,
    schedule: dict[str, object],
    where: str,
    fragment: str,
) -> None:
    response = await client.post(
        "/v1/messages", json={"type": "orders.created", "payload": {}, **schedule}
    )

    assert response.status_code == 422
    [(location, message)] = _problems(response)
    assert location == where and fragment in message, (location, message)
    assert publisher.published == []


async def test_a_type_too_long_to_carry_a_delay_is_422(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/v1/messages", json={"type": "a" * 200, "payload": {}, "delay_s": 5}
    )

    assert response.status_code == 422
    [(location, message)] = _problems(response)
    assert location == "body.delay_s" and "too long to be delayed" in message
    assert publisher.published == []


async def test_a_batch_with_one_bad_schedule_publishes_nothing(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    messages = [
        {"type": "jobs.run", "payload": 1, "delay_s": 10},
        {"type": "jobs.run", "payload": 2, "deliver_at": "2001-01-01T00:00:00Z"},
    ]

    response = await client.post("/v1/messages/batch", json={"messages": messages})

    assert response.status_code == 422
    assert _problems(response)[0][0] == "body.messages.1.deliver_at"
    assert publisher.published == []


async def test_a_batch_schedules_each_item_on_its_own(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    messages = [
        {"type": "jobs.run", "payload": 1, "delay_s": 10},
        {"type": "jobs.run", "payload": 2},
    ]

    response = await client.post("/v1/messages/batch", json={"messages": messages})

    assert response.status_code == 202, response.text
    first, second = response.json()["results"]
    assert first["deliver_at"] is not None and second["deliver_at"] is None
    assert sorted(d is None for d in publisher.delays.values()) == [False, True]
