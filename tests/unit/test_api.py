"""The ingestion API's contract with clients: precise 4xx, 503 with Retry-After, no 500s."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import headers as h
from common.delays import MAX_DELAY_S
from common.errors import BrokerUnavailableError, PublishNotConfirmedError
from producer.app import create_app
from producer.settings import ProducerSettings
from tests.fakes import FakePublisher


class SelectivelyFailingPublisher(FakePublisher):
    """A FakePublisher whose publish of chosen messages (by message id) raises an error."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[str, Exception] = {}

    async def publish(
        self, message: aio_pika.Message, routing_key: str, delay_s: float | None = None
    ) -> None:
        failure = self.failures.get(message.message_id or "")
        if failure is not None:
            raise failure
        await super().publish(message, routing_key, delay_s)


@pytest.fixture
def publisher() -> SelectivelyFailingPublisher:
    return SelectivelyFailingPublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    settings = ProducerSettings(
        max_payload_bytes=1024, max_request_bytes=64 * 1024, retry_after_s=7
    )
    app = create_app(settings, publisher=publisher)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def _errors(response: httpx.Response) -> list[tuple[str, str]]:
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in response.json()["detail"]]


async def test_a_valid_message_is_published_with_its_envelope(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/v1/messages",
        json={
            "type": "orders.created",
            "payload": {"id": 1},
            "priority": "high",
            "correlation_id": "c-1",
            "message_id": "my-id-1",
            "headers": {"tenant": "acme"},
        },
    )
    assert response.status_code == 202
    assert response.json() == {
        "status": "accepted",
        "message_id": "my-id-1",
        "routing_key": "high.orders.created",
        "deliver_at": None,
    }
    [(routing_key, message)] = publisher.published
    assert routing_key == "high.orders.created"
    assert orjson.loads(message.body) == {"id": 1}
    assert message.type == "orders.created"
    assert message.correlation_id == "c-1"
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2
    assert message.headers == {"tenant": "acme"}


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"payload": {}}, "body.type", "Field required"),
        ({"type": "Orders Created", "payload": {}}, "body.type", "pattern"),
        ({"type": "orders.created"}, "body.payload", "Field required"),
        (
            {"type": "orders.created", "payload": {}, "priority": "urgent"},
            "body.priority",
            "high, normal, low",
        ),
        (
            {"type": "orders.created", "payload": {}, "headers": {"x-hopline-attempt": "9"}},
            "body.headers",
            "reserved",
        ),
        (
            {"type": "orders.created", "payload": {}, "headers": {"tenant": 5}},
            "body.headers.tenant",
            "string",
        ),
        ({"type": "orders.created", "payload": {}, "surprise": 1}, "body.surprise", "Extra inputs"),
    ],
)
async def test_invalid_messages_get_422_naming_the_field(
    client: httpx.AsyncClient,
    publisher: FakePublisher,
    body: dict[str, Any],
    loc: str,
    fragment: str,
) -> None:
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 422
    assert any(where == loc and fragment in msg for where, msg in _errors(response)), response.text
    assert publisher.published == []


async def test_malformed_json_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", content=b'{"type": "a", ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_a_payload_over_the_limit_is_413_with_the_sizes(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/v1/messages", json={"type": "blobs.stored", "payload": {"data": "x" * 2000}}
    )
    assert response.status_code == 413
    assert "limit is 1024 bytes" in response.json()["detail"]
    assert publisher.published == []


async def test_a_request_body_over_the_limit_is_refused_before_parsing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/messages",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "HOPLINE_MAX_REQUEST_BYTES" in response.json()["detail"]


@pytest.mark.parametrize("failure", ["unavailable", "unconfirmed"])
async def test_broker_trouble_is_503_with_retry_after(
    client: httpx.AsyncClient, publisher: FakePublisher, failure: str
) -> None:
    if failure == "unavailable":
        publisher.available = False
    else:
        publisher.confirming = False
    response = await client.post("/v1/messages", json={"type": "a.b", "payload": 1})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["detail"]


async def test_a_batch_publishes_every_item_and_reports_each(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    items = [{"type": "jobs.run", "payload": {"n": n}, "priority": "low"} for n in range(5)]
    response = await client.post("/v1/messages/batch", json={"messages": items})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 5 and body["failed"] == 0
    assert [r["index"] for r in body["results"]] == list(range(5))
    assert sorted(orjson.loads(m.body)["n"] for _, m in publisher.published) == list(range(5))


async def test_a_batch_where_some_items_fail_is_202_saying_which_failed_and_why(
    client: httpx.AsyncClient, publisher: SelectivelyFailingPublisher
) -> None:
    # Given a broker that is reachable but fails to take items b-1 and b-3, each its own way
    unreachable = "RabbitMQ is not reachable right now"
    unconfirmed = "the broker did not confirm the publish within 1 s"
    publisher.failures = {
        "b-1": BrokerUnavailableError(unreachable),
        "b-3": PublishNotConfirmedError(unconfirmed),
    }
    items = [{"type": "jobs.run", "payload": {"n": n}, "message_id": f"b-{n}"} for n in range(5)]

    # When the batch is posted
    response = await client.post("/v1/messages/batch", json={"messages": items})

    # Then it is accepted in part: counts, and a result per item in order naming each failure
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 3,
        "failed": 2,
        "results": [
            {
                "index": n,
                "status": "failed" if n in (1, 3) else "accepted",
                "message_id": f"b-{n}",
                "routing_key": "normal.jobs.run",
                "deliver_at": None,
                "error": {1: unreachable, 3: unconfirmed}.get(n),
                "replayed": False,
            }
            for n in range(5)
        ],
    }
    # ... and exactly the accepted items reached the broker
    assert sorted(m.message_id or "" for _, m in publisher.published) == ["b-0", "b-2", "b-4"]


async def test_a_batch_where_every_item_fails_is_503_with_retry_after(
    client: httpx.AsyncClient, publisher: SelectivelyFailingPublisher
) -> None:
    # Given a broker that is reachable but confirms none of the batch's items
    unconfirmed = "the broker did not confirm the publish within 1 s"
    publisher.failures = {
        "b-0": PublishNotConfirmedError(unconfirmed),
        "b-1": BrokerUnavailableError("RabbitMQ is not reachable right now"),
        "b-2": PublishNotConfirmedError(unconfirmed),
    }
    items = [{"type": "jobs.run", "payload": {"n": n}, "message_id": f"b-{n}"} for n in range(3)]

    # When the batch is posted
    response = await client.post("/v1/messages/batch", json={"messages": items})

    # Then the whole request is 503 with Retry-After (the client retries the batch), saying
    # none was confirmed and why the first item failed; nothing reached the broker
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "7"
    assert response.json() == {
        "detail": f"none of the 3 messages was confirmed: {unconfirmed}",
    }
    assert publisher.published == []


async def test_a_batch_with_one_bad_item_publishes_nothing(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    items = [
        {"type": "jobs.run", "payload": {}},
        {"type": "jobs.run", "payload": {}, "priority": "asap"},
    ]
    response = await client.post("/v1/messages/batch", json={"messages": items})
    assert response.status_code == 422
    assert ("body.messages.1.priority", "priority must be one of high, normal, low") in _errors(
        response
    )
    assert publisher.published == []


async def test_a_message_id_twice_in_one_batch_is_422_naming_both_items(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    items = [{"type": "jobs.run", "payload": n, "message_id": f"m-{n % 2}"} for n in range(3)]

    response = await client.post("/v1/messages/batch", json={"messages": items})

    assert response.status_code == 422
    assert _errors(response) == [
        (
            "body.messages.2.message_id",
            "message_id repeats item 0's: a batch carries each message_id once",
        )
    ]
    assert publisher.published == []


async def test_a_batch_with_an_idempotency_key_is_503_without_a_status_store(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    # Given a producer without a status store (this client's), a key cannot be honoured
    items = [{"type": "jobs.run", "payload": n, "message_id": f"m-{n}"} for n in range(2)]

    keyed = await client.post(
        "/v1/messages/batch", json={"messages": items}, headers={"Idempotency-Key": "k-1"}
    )
    by_ids = await client.post("/v1/messages/batch", json={"messages": items})

    # Then the header is refused and publishes nothing; message_ids alone publish as before
    assert keyed.status_code == 503
    assert keyed.json()["detail"] == (
        "this producer keeps no status store: it cannot honour an Idempotency-Key"
    )
    assert by_ids.status_code == 202
    assert sorted(m.message_id or "" for _, m in publisher.published) == ["m-0", "m-1"]


async def test_an_oversized_batch_is_422(client: httpx.AsyncClient) -> None:
    items = [{"type": "a.b", "payload": 0}] * 1001
    response = await client.post("/v1/messages/batch", json={"messages": items})
    assert response.status_code == 422
    assert "at most 1000" in response.text


async def test_readiness_follows_the_broker(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    publisher.available = False
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"type": "orders.created", "payload": {}}'),
        ("application/x-www-form-urlencoded", b"type=orders.created&payload=x"),
    ],
)
async def test_a_body_that_is_not_json_gets_415_naming_json(
    client: httpx.AsyncClient, publisher: FakePublisher, content_type: str, body: bytes
) -> None:
    for route in ("/v1/messages", "/v1/messages/batch"):
        response = await client.post(route, content=body, headers={"content-type": content_type})
        assert response.status_code == 415, response.text
        assert "Content-Type: application/json" in response.json()["detail"]
    assert publisher.published == []


async def test_the_api_docs_work_offline(client: httpx.AsyncClient) -> None:
    # Given the docs page: every script and style it loads ...
    page = (await client.get("/docs")).text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+\.(?:js|css))['"]""", page)
    assert len(assets) >= 2, page
    for asset in assets:
        # ... comes from the producer itself, not a CDN, and is there
        assert asset.startswith("/"), asset
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 10_000


async def test_metrics_count_requests_confirms_batches_and_503_causes(
    client: httpx.AsyncClient, publisher: SelectivelyFailingPublisher
) -> None:
    # Given one accepted message, and a batch of 3 where one is not confirmed
    publisher.failures = {"m-1": PublishNotConfirmedError("no confirm in time")}
    assert (
        await client.post("/v1/messages", json={"type": "a.b", "payload": 1})
    ).status_code == 202
    batch = [{"type": "a.b", "payload": n, "message_id": f"m-{n}"} for n in range(3)]
    assert (await client.post("/v1/messages/batch", json={"messages": batch})).status_code == 202
    # When Prometheus scrapes the producer
    text = (await client.get("/metrics")).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    # Then it counts exactly that, with bounded labels
    requests = "hopline_producer_requests_total"
    assert samples[(requests, (("route", "/v1/messages"), ("status", "202")))] == 1
    assert samples[(requests, (("route", "/v1/messages/batch"), ("status", "202")))] == 1
    assert samples[("hopline_producer_publish_seconds_count", ())] == 3
    assert samples[("hopline_producer_unavailable_total", (("cause", "not_confirmed"),))] == 1
    assert samples[("hopline_producer_batch_messages_sum", ())] == 3


# Scheduling: `delay_s` or `deliver_at`, bounds checked as 422.


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
    # Two hours from the request, less the fraction of a second `due` was rounded down by
    assert 7190 < (publisher.delays[message.message_id or ""] or 0) <= 7200


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
    [(location, message)] = _errors(response)
    assert location == where and fragment in message, (location, message)
    assert publisher.published == []


async def test_a_type_too_long_to_carry_a_delay_is_422(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/v1/messages", json={"type": "a" * 200, "payload": {}, "delay_s": 5}
    )

    assert response.status_code == 422
    [(location, message)] = _errors(response)
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
    assert _errors(response)[0][0] == "body.messages.1.deliver_at"
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
