"""The event emitter on a real broker: batches with confirms, and nothing dropped when the
broker is cut off (through a TCP proxy) for a while."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aio_pika
from pydantic import SecretStr
from structlog.testing import capture_logs

from common.connection import connect
from common.declare import declare_topology
from common.emitter import EventEmitter
from common.events import Event
from common.settings import HoplineSettings
from common.topology import core_topology
from tests.support.events import event
from tests.support.pipeline import drain, queue_depth
from tests.support.proxy import TcpProxy
from tests.support.wait import wait_until

OBSERVER = "test.observer"


async def _observe(amqp_url: str) -> None:
    """The core topology and a queue of ours bound to every event, as another system's."""
    settings = HoplineSettings(amqp_url=SecretStr(amqp_url))
    connection = await connect(settings, name="test", robust=False)
    try:
        await declare_topology(connection, core_topology(settings))
        channel = await connection.channel()
        queue = await channel.declare_queue(OBSERVER, durable=True)
        await queue.bind(settings.names.events, "#")
    finally:
        await connection.close()


def _events(first: int, count: int) -> list[Event]:
    return [event("succeeded", message_id=f"m-{n}") for n in range(first, first + count)]


async def test_events_arrive_with_their_routing_key_and_body(amqp_url: str) -> None:
    await _observe(amqp_url)
    emitter = EventEmitter(HoplineSettings(amqp_url=SecretStr(amqp_url)), name="test")
    await emitter.start()
    sent = _events(0, 3)
    for one in sent:
        emitter.emit(one, source="demo")
    assert await emitter.flush(timeout_s=10)
    await emitter.close()

    received = await drain(amqp_url, OBSERVER)
    assert [m.routing_key for m in received] == ["demo.succeeded"] * 3
    assert [Event.from_json(m.body) for m in received] == sent
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in received)


async def test_events_emitted_while_the_broker_is_cut_off_are_published_when_it_is_back(
    amqp_url: str,
) -> None:
    await _observe(amqp_url)
    port = urlsplit(amqp_url).port or 5672
    async with TcpProxy("127.0.0.1", port) as proxy:
        settings = HoplineSettings(
            amqp_url=SecretStr(proxy.url(amqp_url) + "?reconnect_interval=0.5"),
            publish_timeout_s=1.0,
        )
        emitter = EventEmitter(settings, name="test", retry_s=0.2)
        await emitter.start()
        with capture_logs() as logs:
            for one in _events(0, 10):
                emitter.emit(one, source="demo")
            assert await emitter.flush(timeout_s=10)

            # When the broker is cut off while events are emitted
            proxy.stall()
            proxy.reset()
            for one in _events(10, 20):
                emitter.emit(one, source="demo")  # never blocks, never raises
            await wait_until(
                lambda: any(e["event"] == "events.unpublished" for e in logs), timeout_s=20
            )
            assert emitter.pending == 20

            # Then, once it is back, every one of them is published
            proxy.resume()
            assert await emitter.flush(timeout_s=30)
        await emitter.close()

    await wait_until(lambda: _depth_at_least(amqp_url, 30), timeout_s=10)
    received = {Event.from_json(m.body).message_id for m in await drain(amqp_url, OBSERVER)}
    assert received == {f"m-{n}" for n in range(30)}
    assert emitter.dropped == 0
    names = [e["event"] for e in logs]
    assert names.count("events.unpublished") == 1  # said once, not once per try
    assert names.count("events.published_again") == 1


async def _depth_at_least(amqp_url: str, wanted: int) -> bool:
    return await queue_depth(amqp_url, OBSERVER) >= wanted


def test_a_full_buffer_drops_the_oldest_and_says_so() -> None:
    emitter = EventEmitter(HoplineSettings(), name="test", max_pending=2)
    with capture_logs() as logs:
        for one in _events(0, 3):
            emitter.emit(one, source="demo")

    assert (emitter.pending, emitter.dropped) == (2, 1)
    assert [e["event"] for e in logs] == ["events.dropped"]


async def test_room_waits_while_events_pile_up_but_not_when_they_cannot_be_published(
    unused_amqp_url: str,
) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(unused_amqp_url))
    emitter = EventEmitter(settings, name="test", high_water=2, retry_s=0.05)
    for one in _events(0, 3):
        emitter.emit(one, source="demo")

    waiting = asyncio.create_task(emitter.room())
    await asyncio.sleep(0)
    held = not waiting.done()  # more than high_water wait, and nothing says the broker is away
    await emitter.start()  # no broker there: events cannot be published at all
    await asyncio.wait_for(waiting, timeout=30)  # so messages are not held back for them
    await emitter.close(timeout_s=0.1)

    assert held
    assert emitter.pending == 3 and emitter.dropped == 0  # kept, not dropped
