"""Delays in the broker by binary levels, on a real RabbitMQ (common.delays, DESIGN "Delays").

The messages here are published straight into the levels and read from a work queue with
the raw client, so what is measured is the broker's routing, not a worker's pace.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pika
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from common import headers as h
from common.connection import broker_version
from common.declare import declare_topology
from common.delays import delay_routing_key, publish_route
from common.names import Names
from common.settings import HoplineSettings
from common.topology import service_topology
from consumer.errors import RetryableError
from consumer.registry import Registry
from deploy.local.broker import LocalBroker, kill_local_broker, restart_local_broker
from tests.support.pipeline import (
    consumer_settings,
    producer_client,
    producer_settings,
    queue_depth,
    running_worker,
)
from tests.support.wait import wait_until

NAMES = Names()
SERVICE = "timing"
TYPE = "timing.tick"
QUEUE = NAMES.work_queue(SERVICE, "normal")
# How late a delayed message may arrive: the promise, "within 1 s after".
LATE_AT_MOST_S = 1.0


async def _declare(amqp_url: str) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(amqp_url))
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        version = broker_version(connection)  # type: ignore[arg-type]
        await declare_topology(connection, service_topology(settings, SERVICE, [TYPE], version))


async def _publish_delayed(
    channel: aio_pika.abc.AbstractChannel, delay_s: float, message_id: str, **properties: Any
) -> None:
    exchange_name, key = publish_route(NAMES, f"normal.{TYPE}", delay_s)
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    await exchange.publish(
        aio_pika.Message(b"{}", message_id=message_id, delivery_mode=2, **properties), key
    )


@asynccontextmanager
async def _arrivals(amqp_url: str) -> AsyncIterator[dict[str, list[float]]]:
    """Arrival times (monotonic) per message id on the work queue, while the block runs."""
    arrived: dict[str, list[float]] = {}
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        queue = await channel.get_queue(QUEUE, ensure=False)

        async def record(message: AbstractIncomingMessage) -> None:
            arrived.setdefault(message.message_id or "", []).append(time.monotonic())
            await message.ack()

        await queue.consume(record)
        yield arrived


async def test_delays_of_1_3_10_and_37_s_arrive_no_earlier_than_asked_and_within_1_s_after(
    amqp_url: str,
) -> None:
    await _declare(amqp_url)
    delays = {"d1": 1, "d3": 3, "d10": 10, "d37": 37}
    async with _arrivals(amqp_url) as arrived:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            sent = {}
            for message_id, delay_s in delays.items():
                sent[message_id] = time.monotonic()
                await _publish_delayed(channel, delay_s, message_id)
        await wait_until(lambda: len(arrived) == 4, timeout_s=60, message="not all arrived")
    for message_id, delay_s in delays.items():
        [at] = arrived[message_id]
        waited = at - sent[message_id]
        assert delay_s <= waited <= delay_s + LATE_AT_MOST_S, (message_id, waited)


async def test_a_delayed_message_keeps_its_id_headers_priority_and_properties(
    amqp_url: str,
) -> None:
    await _declare(amqp_url)
    async with _arrivals(amqp_url):
        pass  # declared a consumer once: nothing to read yet
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await _publish_delayed(
            channel,
            2,
            "keep-me",
            headers={h.ATTEMPT: 3, "tenant": "acme"},
            priority=5,
            correlation_id="c-9",
            type=TYPE,
            content_type="application/json",
        )
        await wait_until(lambda: queue_depth(amqp_url, QUEUE), timeout_s=10, message="no arrival")
        queue = await channel.get_queue(QUEUE, ensure=False)
        message = await queue.get(fail=True)
        await message.ack()
    assert message.message_id == "keep-me"
    assert message.priority == 5 and message.correlation_id == "c-9" and message.type == TYPE
    assert message.headers[h.ATTEMPT] == 3 and message.headers["tenant"] == "acme"
    assert message.routing_key == delay_routing_key(2, f"normal.{TYPE}")


async def test_10000_messages_with_random_delays_up_to_31_s_all_arrive_once_none_early(
    amqp_url: str,
) -> None:
    await _declare(amqp_url)
    rng = random.Random(2026)
    # 0 to 31 s: every combination of levels 0 to 4 (level 5 is the 37 s test's)
    delays = {f"m-{n}": rng.randint(0, 31) for n in range(10_000)}
    async with _arrivals(amqp_url) as arrived:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            sent = {}
            for batch in _chunks(list(delays), 500):
                now = time.monotonic()
                await asyncio.gather(
                    *(
                        _publish_delayed(channel, delays[message_id], message_id)
                        for message_id in batch
                    )
                )
                sent.update(dict.fromkeys(batch, now))
        await wait_until(
            lambda: len(arrived) == len(delays), timeout_s=150, message="not all arrived"
        )
    twice = [message_id for message_id, times in arrived.items() if len(times) > 1]
    early = [
        message_id
        for message_id, times in arrived.items()
        if times[0] - sent[message_id] < delays[message_id] - 0.001
    ]
    assert set(arrived) == set(delays), "lost messages"
    assert twice == [], "delivered twice without a fault"
    assert early == [], "delivered before their time"


async def test_a_delayed_message_survives_a_broker_sigkill_while_it_waits(
    private_broker: LocalBroker,
) -> None:
    url = private_broker.amqp_url
    await _declare(url)
    # Given a message waiting 6 s (4 s in level 2, then 2 s in level 1)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        published_at = datetime.now(UTC)
        await _publish_delayed(channel, 6, "survivor")
    assert await queue_depth(url, NAMES.delay_level(2)) == 1
    # When the broker is SIGKILLed while it waits, and started again with its data
    await asyncio.to_thread(kill_local_broker, private_broker)
    await asyncio.to_thread(restart_local_broker, private_broker)
    # Then it arrives, and not before its time
    await wait_until(lambda: queue_depth(url, QUEUE), timeout_s=60, message="lost in the crash")
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(QUEUE, ensure=False)
        message = await queue.get(fail=True)
        await message.ack()
    assert message.message_id == "survivor"
    assert datetime.now(UTC) - published_at >= timedelta(seconds=6)
    for level in range(28):
        assert await queue_depth(url, NAMES.delay_level(level)) == 0


async def test_a_retry_waits_in_the_levels_and_comes_back_to_its_queue_with_the_next_attempt(
    amqp_url: str,
) -> None:
    # Given a handler that asks for a 2 s wait on its first attempt
    registry = Registry(SERVICE)
    seen: list[tuple[float, int, str | None]] = []

    @registry.handler(TYPE, max_attempts=3)
    async def tick(payload: Any, envelope: Any) -> None:
        seen.append((time.monotonic(), envelope.attempt, envelope.headers.get("tenant")))
        if envelope.attempt == 1:
            raise RetryableError("busy", delay=2)

    async with running_worker(consumer_settings(amqp_url), registry):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(NAMES.ingress, ensure=False)
            await exchange.publish(
                aio_pika.Message(b"{}", message_id="r-1", type=TYPE, headers={"tenant": "acme"}),
                f"normal.{TYPE}",
            )
        await wait_until(lambda: len(seen) >= 2, timeout_s=15, message="no second attempt")
    (first, attempt_1, tenant_1), (second, attempt_2, tenant_2) = seen
    assert (attempt_1, attempt_2) == (1, 2)
    assert tenant_1 == tenant_2 == "acme"
    assert second - first >= 2
    assert await queue_depth(amqp_url, NAMES.quarantine(SERVICE)) == 0


async def test_a_foreign_publish_with_deliver_at_is_held_until_then_and_runs_once(
    amqp_url: str,
) -> None:
    registry = Registry(SERVICE)
    seen: list[tuple[float, int]] = []

    @registry.handler(TYPE)
    async def tick(payload: Any, envelope: Any) -> None:
        seen.append((time.monotonic(), envelope.attempt))

    async with running_worker(consumer_settings(amqp_url), registry):
        # Given a plain AMQP client (pika) asking for delivery 3 s from now
        due = datetime.now(UTC) + timedelta(seconds=3)
        sent = time.monotonic()
        await asyncio.to_thread(_pika_publish, amqp_url, {h.DELIVER_AT: due.isoformat()})
        await wait_until(lambda: len(seen) >= 1, timeout_s=15, message="never handled")
        await asyncio.sleep(1.5)  # a second run would come within a level-0 hop
    [(at, attempt)] = seen
    assert at - sent >= 2.9  # the due time was taken with a wall clock: a little slack
    assert attempt == 1


def _pika_publish(amqp_url: str, headers: dict[str, Any]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            NAMES.ingress,
            f"normal.{TYPE}",
            b'{"n": 1}',
            pika.BasicProperties(headers=headers, delivery_mode=2),
            mandatory=True,
        )
    finally:
        connection.close()


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def test_a_message_scheduled_over_http_reaches_every_subscribed_service_when_due(
    amqp_url: str,
) -> None:
    # Given two services subscribed to the same type
    seen: dict[str, list[float]] = {"mailer": [], "audit": []}
    registries = []
    for service in seen:
        registry = Registry(service)

        @registry.handler("users.signed_up")
        async def record(payload: Any, envelope: Any, service: str = service) -> None:
            seen[service].append(time.monotonic())

        registries.append(registry)
    settings = consumer_settings(amqp_url)
    async with (
        running_worker(settings, registries[0]),
        running_worker(settings, registries[1]),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        # When a message is scheduled 3 s ahead, and one of a type nobody subscribes to
        sent = time.monotonic()
        response = await client.post(
            "/v1/messages", json={"type": "users.signed_up", "payload": {}, "delay_s": 3}
        )
        nobody = await client.post(
            "/v1/messages", json={"type": "nobody.listens", "payload": {}, "delay_s": 1}
        )
        assert response.status_code == nobody.status_code == 202, response.text
        await wait_until(
            lambda: all(seen.values()), timeout_s=20, message="a subscriber never got it"
        )
        await wait_until(
            lambda: queue_depth(amqp_url, NAMES.unroutable), timeout_s=10, message="dropped"
        )
    # Then each service got it once, not before its time; the other is kept as unroutable
    for times in seen.values():
        [at] = times
        assert at - sent >= 3
    assert await queue_depth(amqp_url, NAMES.unroutable) == 1
