"""Factories for a real pipeline in one test: settings, a running worker, a producer client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from consumer.registry import Registry
from consumer.settings import ConsumerSettings
from consumer.worker import Worker
from producer.app import create_app
from producer.settings import ProducerSettings
from producer.status import ProducerStatus
from tests.support.wait import wait_until

__all__ = [
    "FAST_RETRY_DELAYS_S",
    "consumer_settings",
    "drain",
    "get_one",
    "producer_client",
    "producer_settings",
    "publish_raw",
    "queue_depth",
    "running_worker",
    "status_once",
]

# Short tiers keep retry tests quick; the tier names become `hopline.retry.200ms` etc.
FAST_RETRY_DELAYS_S = [1.0]  # the shortest delay there is: one level-0 hop


def consumer_settings(amqp_url: str, **overrides: Any) -> ConsumerSettings:
    values: dict[str, Any] = {
        "amqp_url": SecretStr(amqp_url),
        "retry_delays_s": FAST_RETRY_DELAYS_S,
        "shutdown_grace_s": 5.0,
        "concurrency": 4,
    }
    values.update(overrides)
    return ConsumerSettings(**values)


def producer_settings(amqp_url: str, **overrides: Any) -> ProducerSettings:
    values: dict[str, Any] = {
        "amqp_url": SecretStr(amqp_url),
        "retry_delays_s": FAST_RETRY_DELAYS_S,
        "publish_timeout_s": 3.0,
        # The store lives as long as the app: GET /v1/messages/{id} reads what its recorder
        # wrote, and nothing is left behind in the checkout.
        "status_url": SecretStr("sqlite:///:memory:"),
    }
    values.update(overrides)
    return ProducerSettings(**values)


@asynccontextmanager
async def running_worker(settings: ConsumerSettings, registry: Registry) -> AsyncIterator[Worker]:
    async with Worker(settings, registry) as worker:
        yield worker


@asynccontextmanager
async def producer_client(
    settings: ProducerSettings, *, wait_ready: bool = True, status: ProducerStatus | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, its lifespan running, behind an in-process HTTP client; `status` to
    look at its recorder (default: made from `settings`)."""
    app = create_app(settings, status=status)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://producer") as client:
            if wait_ready:

                async def ready() -> bool:
                    return (await client.get("/readyz")).status_code == 200

                await wait_until(ready, timeout_s=15, message="producer never became ready")
            yield client


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Ready messages in `queue`, straight from the broker (no management statistics lag)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return int(count or 0)
    finally:
        await connection.close()


async def get_one(amqp_url: str, queue: str) -> AbstractIncomingMessage | None:
    """Take one message off `queue` (acked), or None when it is empty."""
    messages = await drain(amqp_url, queue, limit=1)
    return messages[0] if messages else None


async def drain(amqp_url: str, queue: str, *, limit: int = 10_000) -> list[AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    taken: list[AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        while len(taken) < limit:
            message = await source.get(no_ack=True, fail=False)
            if message is None:
                break
            taken.append(message)
    finally:
        await connection.close()
    return taken


async def publish_raw(
    amqp_url: str, exchange: str, routing_key: str, message: aio_pika.Message
) -> None:
    """Publish with confirms, as any AMQP client could."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(message, routing_key)
    finally:
        await connection.close()


async def status_once(
    client: httpx.AsyncClient, message_id: str, service: str, state: str, *, events: int = 0
) -> dict[str, Any]:
    """GET /v1/messages/{id} once `service` is in `state` (and at least `events` are on its
    timeline); fails when that does not happen within 20 s."""

    async def reached() -> dict[str, Any] | None:
        answer = await client.get(f"/v1/messages/{message_id}")
        if answer.status_code != 200:
            return None
        body: dict[str, Any] = answer.json()
        found = body["services"].get(service)
        done = found is not None and found["state"] == state and len(body["timeline"]) >= events
        return body if done else None

    found: dict[str, Any] = await wait_until(
        reached, timeout_s=20, message=f"{message_id} never reached {service}: {state}"
    )
    return found
