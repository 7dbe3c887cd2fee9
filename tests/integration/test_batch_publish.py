"""publish_batch on a real broker: one write for a batch, and a truthful bool per message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aio_pika
from aiormq.abc import AbstractChannel
from aiormq.channel import Channel
from pamqp.commands import Basic

from common.batch_publish import publish_batch
from tests.support.pipeline import drain
from tests.support.proxy import TcpProxy

EXCHANGE = "test.batch"
PROPERTIES = Basic.Properties(content_type="application/json", delivery_mode=2)


@asynccontextmanager
async def _channel(
    amqp_url: str, queue_arguments: dict[str, object]
) -> AsyncIterator[AbstractChannel]:
    """A confirming channel on a fresh exchange bound to the queue `test.batch`."""
    connection = await aio_pika.connect(amqp_url)
    try:
        setup = await connection.channel()
        exchange = await setup.declare_exchange(EXCHANGE, "topic", durable=True)
        queue = await setup.declare_queue(EXCHANGE, durable=True, arguments=queue_arguments)
        await queue.bind(exchange, "#")
        channel = await connection.channel(publisher_confirms=True)
        yield await channel.get_underlay_channel()
    finally:
        await connection.close()


async def test_a_connection_that_stopped_writing_reports_batches_unconfirmed_and_recovers(
    amqp_url: str,
) -> None:
    port = urlsplit(amqp_url).port or 5672
    async with (
        TcpProxy("127.0.0.1", port) as proxy,
        _channel(proxy.url(amqp_url), {}) as channel,
    ):
        # Given a network that stops carrying anything (no confirm can come back)
        proxy.stall()
        big = [("demo.big", b"x" * 100_000)] * 40
        batches = [publish_batch(channel, EXCHANGE, big, PROPERTIES, 2) for _ in range(20)]
        # Then every batch comes back unconfirmed (the bound only tells a hang from an
        # answer: each batch's own deadline is 2 s)
        stalled = await asyncio.wait_for(asyncio.gather(*batches), timeout=120)

        # And once the network is back, the channel's delivery tags still match the
        # broker's: the abandoned batches' late confirms settle nothing of the next one
        proxy.resume()
        after = await publish_batch(channel, EXCHANGE, [("demo.x", b"1")] * 3, PROPERTIES, 60)

    assert stalled == [[False] * 40] * 20
    assert after == [True] * 3


async def test_a_write_queue_that_never_drains_ends_the_batch_at_its_deadline_with_tags_back(
    amqp_url: str,
) -> None:
    async with _channel(amqp_url, {}) as channel:
        assert isinstance(channel, Channel)
        # Given the write queue of a connection that died: full, and nobody takes from it
        drained = channel.write_queue
        dead: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
        dead.put_nowait(object())
        channel.write_queue = dead
        tag_before = channel.delivery_tag

        # Then the batch ends at its deadline, unconfirmed (the bound only tells a hang
        # from an answer), and gives back the delivery tags it had taken
        stalled = await asyncio.wait_for(
            publish_batch(channel, EXCHANGE, [("demo.x", b"1")] * 3, PROPERTIES, 0.5),
            timeout=30,
        )
        assert channel.delivery_tag == tag_before
        assert not set(channel.confirmations) - {*range(1, tag_before + 1)}

        # And on a queue that drains again, the broker numbers the next batch as we do
        channel.write_queue = drained
        after = await publish_batch(channel, EXCHANGE, [("demo.y", b"2")] * 2, PROPERTIES, 30)

    assert stalled == [False] * 3
    assert after == [True] * 2


async def test_every_message_of_a_batch_arrives_in_order_and_is_confirmed(amqp_url: str) -> None:
    # Two bodies larger than a frame: they travel split, as aiormq splits them
    big = b"[" + b"1," * 150_000 + b"1]"
    messages = [(f"demo.n{n}", f'{{"n":{n}}}'.encode()) for n in range(500)]
    messages[10] = ("demo.big", big)
    messages[400] = ("demo.big", big)
    async with _channel(amqp_url, {}) as channel:
        confirmed = await publish_batch(channel, EXCHANGE, messages, PROPERTIES, timeout_s=30)

    assert confirmed == [True] * 500
    received = await drain(amqp_url, EXCHANGE)
    assert [(m.routing_key, m.body) for m in received] == messages
    assert {m.content_type for m in received} == {"application/json"}


async def test_messages_the_broker_refuses_are_reported_unconfirmed(amqp_url: str) -> None:
    full_after_three = {"x-max-length": 3, "x-overflow": "reject-publish"}
    async with _channel(amqp_url, full_after_three) as channel:
        messages = [("demo.x", b"%d" % n) for n in range(5)]
        confirmed = await publish_batch(channel, EXCHANGE, messages, PROPERTIES, timeout_s=30)
        # The channel is still usable afterwards: a nack does not close it
        again = await publish_batch(channel, EXCHANGE, messages[:1], PROPERTIES, timeout_s=30)

    assert confirmed == [True, True, True, False, False]
    assert again == [False]
    assert [m.body for m in await drain(amqp_url, EXCHANGE)] == [b"0", b"1", b"2"]


async def test_a_channel_the_broker_closes_reports_the_batch_unconfirmed(amqp_url: str) -> None:
    async with _channel(amqp_url, {}) as channel:
        # Publishing to an exchange that does not exist: the broker closes the channel (404)
        messages = [("demo.x", b"1"), ("demo.y", b"2")]
        confirmed = await publish_batch(channel, "test.nowhere", messages, PROPERTIES, 30)
        assert channel.is_closed

    assert confirmed == [False, False]
