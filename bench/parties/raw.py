"""The reference: the raw aio-pika client doing the bare minimum of the same job.

Publish: confirms on, `window` publishes in flight at once (pipelined), mandatory like
hopline's producer; with `rate`, one message every 1/`rate` s instead (confirms still
pipelined), the n-th with message id `numbered_id(n)` so another party can look it up.
Consume: manual ack after an (absent) handler, same prefetch as hopline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import DeliveredMessage

from bench.child import emit, progress_while, rss_kib
from bench.messages import amqp_message, numbered_id

__all__ = ["aiormq_consume", "consume", "publish"]


async def publish(args: dict[str, Any]) -> dict[str, Any]:
    count: int = args["count"]
    window: int = args.get("window", 1000)
    rate: float | None = args.get("rate")
    routing_key: str = args["routing_key"]
    connection = await aio_pika.connect(args["amqp_url"])
    sent = 0
    peak = [rss_kib()]
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(args["exchange"], ensure=False)
        emit("ready")
        reporter = asyncio.create_task(progress_while(lambda: sent, peak))
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        while sent < count:
            if rate:
                await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
            chunk = 1 if rate else min(window, count - sent)
            pending.extend(
                asyncio.ensure_future(
                    exchange.publish(_numbered(sent + i, rate), routing_key, mandatory=True)
                )
                for i in range(chunk)
            )
            sent += chunk
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
        reporter.cancel()
    finally:
        await connection.close()
    return {"count": sent, "elapsed_s": elapsed, "rate": sent / elapsed}


def _numbered(index: int, paced: float | None) -> aio_pika.Message:
    return amqp_message(index, message_id=numbered_id(index) if paced else None)


async def consume(args: dict[str, Any]) -> dict[str, Any]:
    count: int = args["count"]
    connection = await aio_pika.connect(args["amqp_url"])
    acked = 0
    done = asyncio.get_running_loop().create_future()
    peak = [rss_kib()]

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal acked
        await message.ack()
        acked += 1
        if acked == count and not done.done():
            done.set_result(None)

    try:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=args["prefetch"])
        queue = await channel.get_queue(args["queue"], ensure=False)
        emit("ready")
        reporter = asyncio.create_task(progress_while(lambda: acked, peak))
        started = time.perf_counter()
        await queue.consume(on_message, no_ack=False)
        await done
        elapsed = time.perf_counter() - started
        reporter.cancel()
    finally:
        await connection.close()
    return {"count": acked, "elapsed_s": elapsed, "rate": acked / elapsed, "rss_peak_kib": peak[0]}


async def aiormq_consume(args: dict[str, Any]) -> dict[str, Any]:
    """The client library's ceiling: aiormq (under aio-pika) with no message object, no
    handler, and one `basic.ack(multiple=True)` per event-loop turn. Not a fair reference
    (it handles nothing); it says how fast any aio-pika based consumer could drain here."""
    count: int = args["count"]
    connection = await aiormq.connect(args["amqp_url"])
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    peak = [rss_kib()]
    state = {"seen": 0, "highest": 0, "flush_scheduled": False}
    sending: set[asyncio.Task[None]] = set()

    def flush() -> None:
        state["flush_scheduled"] = False
        task = loop.create_task(channel.basic_ack(state["highest"], multiple=True))
        sending.add(task)
        task.add_done_callback(sending.discard)

    async def on_message(message: DeliveredMessage) -> None:
        state["seen"] += 1
        state["highest"] = max(state["highest"], message.delivery.delivery_tag or 0)
        if not state["flush_scheduled"]:
            state["flush_scheduled"] = True
            loop.call_soon(flush)
        if state["seen"] == count and not done.done():
            done.set_result(None)

    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=args["prefetch"])
        emit("ready")
        reporter = asyncio.create_task(progress_while(lambda: state["seen"], peak))
        started = time.perf_counter()
        await channel.basic_consume(args["queue"], on_message, no_ack=False)
        await done
        elapsed = time.perf_counter() - started
        reporter.cancel()
        await asyncio.sleep(0.1)  # the last multiple ack goes out
    finally:
        await connection.close()
    seen = state["seen"]
    return {"count": seen, "elapsed_s": elapsed, "rate": seen / elapsed, "rss_peak_kib": peak[0]}
