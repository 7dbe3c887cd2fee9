"""Delays in the broker (common.delays): how late a delayed message arrives, and what the
retry path moves through the delay levels next to the fixed TTL tier of earlier versions.

Both are the broker's work (routing and dead-lettering), so they are measured with the raw
client in this process: the same messages, the same confirms, only the route differs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from bench.context import Context, Row
from bench.messages import amqp_message, key, work_queue
from bench.stats import percentile
from common import headers as h
from common.delays import REQUEUE_TARGET, delay_route, publish_route
from common.names import Names
from tests.support.legacy import declare_legacy_tier

__all__ = ["delays"]

_DELAYED = 10_000
_LONGEST_S = 20  # random delays of 1 to 20 s: every level from 0 to 4 is crossed
_RETRY_COPIES = 20_000
_TIER_S = 1.0
NAMES = Names()  # the bench's settings keep the default prefix


async def delays(ctx: Context) -> None:
    quick = ctx.config.messages < 100_000
    count = 1_000 if quick else _DELAYED
    with ctx.vhost("delays") as url:
        await ctx.declare(url)
        queue = work_queue(ctx.settings(url))
        direct = await _lateness(url, queue, [0.0] * count, "direct publish")
        rng = random.Random(14)
        wait_s = [float(rng.randint(1, _LONGEST_S)) for _ in range(count)]
        delayed = await _lateness(url, queue, wait_s, "delayed publish")
    ctx.add(
        Row(
            ctx.queue_type,
            f"delayed delivery, {count:,} messages of 1 to {_LONGEST_S} s: lateness p99",
            delayed["p99_ms"],
            "ms",
            direct["p99_ms"],
            "direct publish to consume, p99",
            lower_is_better=True,
            detail={"delayed": delayed, "direct": direct},
        )
    )
    ctx.add(
        Row(
            ctx.queue_type,
            "  lateness p50",
            delayed["p50_ms"],
            "ms",
            direct["p50_ms"],
            "direct publish to consume, p50",
            lower_is_better=True,
        )
    )
    copies = 2_000 if quick else _RETRY_COPIES
    with ctx.vhost("retry-tier") as url:
        await ctx.declare(url)
        tier = await _retry_path(url, ctx, copies, _tier_route)
    with ctx.vhost("retry-levels") as url:
        await ctx.declare(url)
        levels = await _retry_path(url, ctx, copies, _level_route)
    ctx.add(
        Row(
            ctx.queue_type,
            f"retry path, {copies:,} copies waiting 1 s: delay levels",
            levels,
            "msg/s",
            tier,
            "a 1 s TTL tier (earlier versions)",
            detail={"levels": levels, "tier": tier},
        )
    )


async def _lateness(url: str, queue: str, wait_s: list[float], label: str) -> dict[str, Any]:
    """Publish one message per wait (confirmed), consume them all, and report how long after
    its due time each arrived."""
    due: dict[str, float] = {}
    late: list[float] = []

    def arrived(message: AbstractIncomingMessage) -> None:
        late.append(time.monotonic() - due[message.message_id or ""])

    async with _consuming(url, queue, len(wait_s), arrived) as (channel, done):
        routes = {s: publish_route(NAMES, key("normal"), s) for s in set(wait_s)}
        exchanges = {
            name: await channel.get_exchange(name, ensure=False) for name, _ in routes.values()
        }

        def publish(index: int, seconds: float) -> Awaitable[Any]:
            message = amqp_message(index)
            message.message_id = f"{label}-{index}"
            due[message.message_id] = time.monotonic() + seconds
            name, routing_key = routes[seconds]
            return exchanges[name].publish(message, routing_key)

        await _in_windows(publish(index, seconds) for index, seconds in enumerate(wait_s))
        await asyncio.wait_for(done.wait(), timeout=_LONGEST_S + 60)
    return {
        "p50_ms": percentile(late, 0.5) * 1000,
        "p99_ms": percentile(late, 0.99) * 1000,
        "early": sum(1 for seconds in late if seconds < 0),
    }


@asynccontextmanager
async def _consuming(
    url: str, queue: str, expected: int, seen: Callable[[AbstractIncomingMessage], None]
) -> AsyncIterator[tuple[AbstractChannel, asyncio.Event]]:
    """Consume `queue` (each message shown to `seen`, then acked) and yield a channel with
    confirms to publish on, and an event set once `expected` messages have come."""
    count = 0
    done = asyncio.Event()
    connection = await aio_pika.connect(url)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=500)

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal count
            seen(message)
            await message.ack()
            count += 1
            if count == expected:
                done.set()

        await (await consume.get_queue(queue, ensure=False)).consume(on_message)
        yield await connection.channel(publisher_confirms=True), done


async def _in_windows(publishes: Iterable[Awaitable[Any]], window: int = 500) -> None:
    """Await confirms `window` at a time, as the bench's raw publisher does."""
    pending: list[Awaitable[Any]] = []
    for publish in publishes:
        pending.append(publish)
        if len(pending) == window:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


# Where a retry copy goes: (exchange, routing key), declaring what it needs.
Route = Callable[[AbstractChannel], Awaitable[tuple[AbstractExchange, str]]]


async def _level_route(channel: AbstractChannel) -> tuple[AbstractExchange, str]:
    """As a consumer's settler publishes a retry copy (common.delays.delay_route)."""
    name, key = delay_route(NAMES, _TIER_S, REQUEUE_TARGET)
    return await channel.get_exchange(name, ensure=False), key


async def _tier_route(channel: AbstractChannel) -> tuple[AbstractExchange, str]:
    """A retry tier as earlier versions declared it: one TTL queue into `hopline.requeue`."""
    return await declare_legacy_tier(channel, NAMES, _TIER_S)


async def _retry_path(url: str, ctx: Context, copies: int, route: Route) -> float:
    """Retry copies (as a consumer publishes them: confirmed, with `x-hopline-queue`) per
    second, from the first publish until the last is back in its work queue."""
    queue = work_queue(ctx.settings(url))
    async with _consuming(url, queue, copies, lambda _message: None) as (channel, done):
        exchange, routing_key = await route(channel)

        def publish(index: int) -> Awaitable[Any]:
            message = amqp_message(index)
            message.headers = {h.ORIGIN_QUEUE: queue, h.ATTEMPT: 2}
            return exchange.publish(message, routing_key, mandatory=True)

        started = time.monotonic()
        await _in_windows(publish(index) for index in range(copies))
        await asyncio.wait_for(done.wait(), timeout=120)
        return copies / (time.monotonic() - started)
