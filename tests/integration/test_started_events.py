"""`started` is published once a handler has run for HOPLINE_EVENTS_STARTED_AFTER_S; a faster
handler's start travels in the event that ends its attempt (real RabbitMQ, real producer)."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import httpx

from common.events import Event
from common.names import Names
from consumer.registry import Registry
from tests.support.pipeline import (
    consumer_settings,
    drain,
    producer_client,
    producer_settings,
    running_worker,
)
from tests.support.wait import wait_until

NAMES = Names()
OBSERVER = "test.started-observer"
ORDER = {"type": "orders.created", "payload": {"order_id": "A-1"}}


async def _observe(amqp_url: str) -> None:
    """A queue of another system's, bound to every lifecycle event."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(OBSERVER, durable=True)
        await queue.bind(NAMES.events, "#")
    finally:
        await connection.close()


async def _state(client: httpx.AsyncClient, message_id: str) -> str | None:
    answer = await client.get(f"/v1/messages/{message_id}")
    if answer.status_code != 200:
        return None
    demo = answer.json()["services"].get("demo")
    return None if demo is None else str(demo["state"])


async def test_a_fast_handler_s_start_travels_in_its_succeeded_event(amqp_url: str) -> None:
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> None:
        return None

    async with (
        running_worker(consumer_settings(amqp_url), registry),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        await _observe(amqp_url)
        message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        await wait_until(lambda: _is(client, message_id, "succeeded"), timeout_s=20)
        timeline = (await client.get(f"/v1/messages/{message_id}")).json()["timeline"]

    events = await _consumer_events(amqp_url)
    # One event for the whole run of the handler, not two
    assert [(e.event, e.message_id) for e in events] == [("succeeded", message_id)]
    succeeded = events[0]
    assert succeeded.started_at is not None and succeeded.started_at <= succeeded.at
    # And the status store still shows when it started
    assert [e["event"] for e in timeline] == ["accepted", "started", "succeeded"]


async def test_a_handler_running_longer_is_processing_while_it_runs(amqp_url: str) -> None:
    release = asyncio.Event()
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: dict[str, Any]) -> None:
        await release.wait()

    settings = consumer_settings(amqp_url, events_started_after_s=0.2)
    async with (
        running_worker(settings, registry),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        await _observe(amqp_url)
        message_id = (await client.post("/v1/messages", json=ORDER)).json()["message_id"]
        # While the handler still runs, its start is announced on its own
        await wait_until(lambda: _is(client, message_id, "processing"), timeout_s=20)
        release.set()
        await wait_until(lambda: _is(client, message_id, "succeeded"), timeout_s=20)

    events = await _consumer_events(amqp_url)
    assert [e.event for e in events] == ["started", "succeeded"]
    started, succeeded = events
    assert started.at <= succeeded.at
    assert succeeded.started_at is None  # announced already: not carried twice


async def _consumer_events(amqp_url: str) -> list[Event]:
    """The consumer's events, in the order it published them (the producer's `accepted`
    comes on a connection of its own: before or after them)."""
    events = [Event.from_json(m.body) for m in await drain(amqp_url, OBSERVER)]
    assert [e.event for e in events if e.service == "producer"] == ["accepted"]
    return [e for e in events if e.service == "demo"]


async def _is(client: httpx.AsyncClient, message_id: str, state: str) -> bool:
    return await _state(client, message_id) == state
