"""Delays in the broker (common.delays): how late a delayed message arrives, and what the
retry path moves through the delay levels next to the fixed TTL tier of earlier versions.

Both are the broker's work (routing and dead-lettering), so they are measured with the raw
client in this process: the same messages, the same confirms, only the route differs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from bench.context import Context, Row
from bench.messages import amqp_message, key, work_queue
from bench.stats import percentile
from common import headers as h
from common.delays import REQUEUE_TARGET, delay_route, publish_route
from common.names import Names

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
    done = asyncio.Event()
    connection = await aio_pika.connect(url)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=500)

        async def arrived(message: AbstractIncomingMessage) -> None:
            late.append(time.monotonic() - due[message.message_id or ""])
            await message.ack()
            if len(late) == len(wait_s):
                done.set()

        await (await consume.get_queue(queue, ensure=False)).consume(arrived)
        channel = await connection.channel(publisher_confirms=True)
        routes = {s: publish_route(NAMES, key("normal"), s) for s in set(wait_s)}
        exchanges = {
            name: await channel.get_exchange(name, ensure=False) for name, _ in routes.values()
        }
        sends = []
        for index, seconds in enumerate(wait_s):
            message_id = f"{label}-{index}"
            due[message_id] = time.monotonic() + seconds
            name, routing_key = routes[seconds]
            message = amqp_message(index)
            message.message_id = message_id
            sends.append(exchanges[name].publish(message, routing_key))
            if len(sends) == 500:
                await asyncio.gather(*sends)
                sends = []
        await asyncio.gather(*sends)
        await asyncio.wait_for(done.wait(), timeout=_LONGEST_S + 60)
    return {
        "p50_ms": percentile(late, 0.5) * 1000,
        "p99_ms": percentile(late, 0.99) * 1000,
        "early": sum(1 for seconds in late if seconds < 0),
    }


# Where a retry copy goes: (exchange, routing key), declaring what it needs.
Route = Callable[[AbstractChannel], Awaitable[tuple[AbstractExchange, str]]]


async def _level_route(channel: AbstractChannel) -> tuple[AbstractExchange, str]:
    """As a consumer's settler publishes a retry copy (common.delays.delay_route)."""
    name, key = delay_route(NAMES, _TIER_S, REQUEUE_TARGET)
    return await channel.get_exchange(name, ensure=False), key


async def _tier_route(channel: AbstractChannel) -> tuple[AbstractExchange, str]:
    """A retry tier as earlier versions declared it: one TTL queue into `hopline.requeue`."""
    names = NAMES
    tier = names.legacy_retry_queue(_TIER_S)
    exchange = await channel.declare_exchange(names.legacy_retry, "direct", durable=True)
    declared = await channel.declare_queue(
        tier,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": round(_TIER_S * 1000),
            "x-dead-letter-exchange": names.requeue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    await declared.bind(exchange, tier)
    return exchange, tier


async def _retry_path(url: str, ctx: Context, copies: int, route: Route) -> float:
    """Retry copies (as a consumer publishes them: confirmed, with `x-hopline-queue`) per
    second, from the first publish until the last is back in its work queue."""
    queue = work_queue(ctx.settings(url))
    back = 0
    done = asyncio.Event()
    connection = await aio_pika.connect(url)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=500)

        async def returned(message: AbstractIncomingMessage) -> None:
            nonlocal back
            back += 1
            await message.ack()
            if back == copies:
                done.set()

        await (await consume.get_queue(queue, ensure=False)).consume(returned)
        channel = await connection.channel(publisher_confirms=True)
        exchange, routing_key = await route(channel)
        started = time.monotonic()
        sends = []
        for index in range(copies):
            message = amqp_message(index)
            message.headers = {h.ORIGIN_QUEUE: queue, h.ATTEMPT: 2}
            sends.append(exchange.publish(message, routing_key, mandatory=True))
            if len(sends) == 500:
                await asyncio.gather(*sends)
                sends = []
        await asyncio.gather(*sends)
        await asyncio.wait_for(done.wait(), timeout=120)
        return copies / (time.monotonic() - started)
