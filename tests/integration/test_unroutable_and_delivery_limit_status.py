"""Where is my message, when the broker routed it alone (real RabbitMQ, the producer's
recorder and its broker watch, GET /v1/messages/{id}): a key no binding matches ends
`unroutable` and stays kept; a message that keeps killing its consumer ends `quarantined`
by the delivery limit; what a consumer already announced is not announced again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from common.connection import broker_version, connect
from common.declare import declare_topology
from common.names import Names
from common.status.store import open_store
from common.status.watch import BrokerWatch
from common.topology import service_topology
from consumer.errors import PermanentError
from consumer.registry import Registry
from producer.status import ProducerStatus
from tests.support.foreign import publish_with_pika
from tests.support.pipeline import (
    consumer_settings,
    drain,
    producer_client,
    producer_settings,
    queue_depth,
    running_worker,
    status_once,
)
from tests.support.wait import wait_until

NAMES = Names()
ORDER = {"type": "orders.created", "payload": {"order_id": "A-1", "amount_cents": 100}}
Heard = list[tuple[str, dict[str, Any]]]


@asynccontextmanager
async def _producer(
    amqp_url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, BrokerWatch]]:
    """The real producer (its recorder inside) and the recorder's broker watch."""
    settings = producer_settings(amqp_url, **overrides)
    status = ProducerStatus.from_settings(settings)
    assert status.recorder is not None and status.recorder.watch is not None
    async with producer_client(settings, status=status) as client:
        yield client, status.recorder.watch


@asynccontextmanager
async def _events_heard(amqp_url: str, *keys: str) -> AsyncIterator[Heard]:
    """What another system bound to `hopline.events` with `keys` receives."""
    heard: Heard = []
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for key in keys:
            await queue.bind(NAMES.events, key)

        async def arrived(message: AbstractIncomingMessage) -> None:
            heard.append((message.routing_key or "", orjson.loads(message.body)))
            await message.ack()

        await queue.consume(arrived)
        yield heard
    finally:
        await connection.close()


def _orders_registry(seen: list[str]) -> Registry:
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> None:
        seen.append(payload["order_id"])

    return registry


async def test_a_foreign_message_no_binding_matches_ends_unroutable_and_stays_kept(
    amqp_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'status.sqlite3'}"
    seen: list[str] = []
    async with (
        _producer(amqp_url, status_url=SecretStr(store_url)) as (client, watch),
        running_worker(consumer_settings(amqp_url), _orders_registry(seen)),
        _events_heard(amqp_url, "*.unroutable") as heard,
    ):
        # Given a healthy message, and a foreign one under a key no service binds
        healthy_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        await asyncio.to_thread(
            publish_with_pika,
            amqp_url,
            "normal.invoices.sent",
            b'{"invoice": 7}',
            message_id="foreign-1",
        )

        # When the recorder has seen both through
        status = await status_once(client, "foreign-1", "producer", "unroutable")
        healthy = await status_once(client, healthy_id, "demo", "succeeded")
        await wait_until(lambda: heard, timeout_s=10, message="no unroutable event heard")
        await wait_until(lambda: watch.settled >= 1, timeout_s=10)

    # Then the foreign message reads `unroutable`, with the reason and where it is kept
    assert (status["type"], status["routing_key"]) == ("invoices.sent", "normal.invoices.sent")
    assert list(status["services"]) == ["producer"]
    reason = status["services"]["producer"]["reason"]
    assert "'normal.invoices.sent' matched no binding" in reason
    assert "kept in hopline.unroutable" in reason
    assert [e["event"] for e in status["timeline"]] == ["unroutable"]
    # ... in the store itself too
    store = open_store(store_url, retention_s=3600)
    try:
        stored = await store.lookup("foreign-1", datetime.now(UTC))
    finally:
        await store.close()
    assert stored is not None
    assert [(s.service, s.state) for s in stored.services] == [("producer", "unroutable")]
    # ... other subscribers heard it, under the producer's source
    assert [(key, event["message_id"]) for key, event in heard] == [
        ("producer.unroutable", "foreign-1")
    ]
    # ... and the message itself is still kept for the operators; the recorder's copy is gone
    [kept] = await drain(amqp_url, NAMES.unroutable)
    assert (kept.message_id, kept.body) == ("foreign-1", b'{"invoice": 7}')
    assert await queue_depth(amqp_url, NAMES.status_unroutable) == 0
    # Nothing healthy is marked unroutable
    assert list(healthy["services"]) == ["demo"]
    assert "unroutable" not in [e["event"] for e in healthy["timeline"]]
    assert seen == ["A-1"]
    assert (watch.emitted, watch.without_id) == (1, 0)


async def test_a_scheduled_message_nobody_subscribes_to_ends_unroutable_under_its_own_key(
    amqp_url: str,
) -> None:
    async with _producer(amqp_url) as (client, _):
        # When a message is scheduled for a type no service handles
        answer = await client.post(
            "/v1/messages", json={"type": "nobody.listens", "payload": {}, "delay_s": 1}
        )
        message_id = answer.json()["message_id"]

        # Then, once due, the delay levels' alternate exchange kept it, and it says so
        status = await status_once(client, message_id, "producer", "unroutable")

    assert status["routing_key"] == "normal.nobody.listens"  # not the delay's bit words
    assert [e["event"] for e in status["timeline"]] == ["accepted", "unroutable"]
    assert await queue_depth(amqp_url, NAMES.unroutable) == 1


async def test_a_message_without_an_id_is_counted_and_still_kept(amqp_url: str) -> None:
    async with _producer(amqp_url) as (_, watch):
        # When a foreign message without a message_id matches no binding (pika: aio-pika
        # would make one up)
        await asyncio.to_thread(publish_with_pika, amqp_url, "normal.x.y", b"{}")

        # Then it is counted (nobody can look it up) and its copy settled
        await wait_until(lambda: watch.without_id == 1, timeout_s=10)
        await wait_until(lambda: watch.settled == 1, timeout_s=10)

    assert watch.emitted == 0
    assert await queue_depth(amqp_url, NAMES.unroutable) == 1


async def _crash_while_holding(amqp_url: str, queue: str) -> bool:
    """What a consumer killed mid-handler does, as the broker sees it: it took a delivery and
    its connection ended without settling it. False when the queue was empty."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        return await source.get(no_ack=False, fail=False) is not None
    finally:
        await connection.close()


async def test_a_message_over_the_delivery_limit_ends_quarantined_by_the_broker(
    amqp_url: str,
) -> None:
    settings = consumer_settings(amqp_url, delivery_limit=2)
    work_queue = NAMES.work_queue("demo", "normal")
    async with (
        _producer(amqp_url) as (client, watch),
        _events_heard(amqp_url, "demo.quarantined") as heard,
    ):
        # Given the demo service's queues (limit 2), and an accepted message in them
        connection = await connect(settings, name="test-declare", robust=False)
        try:
            version = broker_version(connection)
            topology = service_topology(settings, "demo", ["orders.created"], version)
            await declare_topology(connection, topology)
        finally:
            await connection.close()
        message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]

        # When every consumer that takes it dies holding it, until the broker gives up
        async def dead_lettered() -> bool:
            await _crash_while_holding(amqp_url, work_queue)
            return await queue_depth(amqp_url, NAMES.quarantine("demo")) == 1

        await wait_until(dead_lettered, timeout_s=20, message="never dead-lettered")

        # Then its status says quarantined, by the delivery limit
        status = await status_once(client, message_id, "demo", "quarantined")
        await wait_until(lambda: watch.settled == 1, timeout_s=10)
        await wait_until(lambda: heard, timeout_s=10)

    demo = status["services"]["demo"]
    assert demo["error_type"] == "DeliveryLimitExceeded"
    assert demo["reason"].startswith("delivery_limit: delivered ")
    assert [e["event"] for e in status["timeline"]] == ["accepted", "quarantined"]
    assert [(key, event["message_id"]) for key, event in heard] == [
        ("demo.quarantined", message_id)
    ]
    # the message itself is in quarantine, nowhere else
    assert await queue_depth(amqp_url, work_queue) == 0
    assert await queue_depth(amqp_url, NAMES.status_dead_letters) == 0
    assert "producer" not in status["services"]  # quarantined is not unroutable


async def test_a_quarantine_the_consumer_announced_is_not_announced_again(
    amqp_url: str,
) -> None:
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> None:
        raise PermanentError("the template is missing")

    async with (
        _producer(amqp_url) as (client, watch),
        running_worker(consumer_settings(amqp_url), registry),
        _events_heard(amqp_url, "demo.quarantined") as heard,
    ):
        # When the consumer quarantines a message itself (its copy goes through hopline.dlx)
        message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        status = await status_once(client, message_id, "demo", "quarantined")

        # Then the recorder settles its copy of it without a word
        await wait_until(lambda: watch.settled == 1, timeout_s=10)
        await wait_until(lambda: heard, timeout_s=10)

    assert watch.emitted == 0
    assert [(key, event["message_id"]) for key, event in heard] == [
        ("demo.quarantined", message_id)
    ]
    assert status["services"]["demo"]["error_type"] == "PermanentError"
    assert await queue_depth(amqp_url, NAMES.quarantine("demo")) == 1
