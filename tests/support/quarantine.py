"""Fill a real quarantine queue the way consumers do, for tests of the operator tools."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from pydantic import SecretStr

from common import headers as h
from common.connection import broker_version, connect
from common.declare import declare_topology
from common.settings import HoplineSettings
from common.topology import service_topology
from tests.support.wait import wait_until

__all__ = ["declare_service", "seed_quarantine"]

_TRACEBACK = "Traceback (most recent call last):\n  ...\nRuntimeError: boom"


async def declare_service(amqp_url: str, service: str, patterns: tuple[str, ...] = ("#",)) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(amqp_url), retry_delays_s=[1.0])
    connection = await connect(settings, name="test-seed")
    try:
        version = broker_version(connection)
        await declare_topology(connection, service_topology(settings, service, patterns, version))
    finally:
        await connection.close()


async def seed_quarantine(
    amqp_url: str, service: str, failures: list[dict[str, Any]], *, priority: str = "normal"
) -> list[str]:
    """Publish annotated failure copies to hopline.dlx; returns their message ids in order.

    Each failure: {"id", "type", "payload", "error_type", "error"} (all optional but id).
    """
    await declare_service(amqp_url, service)
    connection = await aio_pika.connect(amqp_url)
    ids = []
    try:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.get_exchange("hopline.dlx", ensure=False)
        for failure in failures:
            message_type = failure.get("type", "jobs.run")
            message = aio_pika.Message(
                orjson.dumps(failure.get("payload", {"n": len(ids)})),
                message_id=failure["id"],
                type=message_type,
                content_type="application/json",
                delivery_mode=2,
                headers={
                    h.ATTEMPT: failure.get("attempts", 3),
                    h.ORIGIN_QUEUE: f"hopline.{service}.{priority}",
                    h.ROUTING_KEY: f"{priority}.{message_type}",
                    h.ERROR_TYPE: failure.get("error_type", "RuntimeError"),
                    h.ERROR_MESSAGE: failure.get("error", "boom"),
                    h.ERROR_TRACEBACK: _TRACEBACK,
                    h.REASON: "gave up after 3 attempts",
                    h.FAILED_AT: datetime.now(UTC).isoformat(),
                    h.CONSUMER: f"{service}@test:1",
                },
            )
            await dlx.publish(message, service)
            ids.append(failure["id"])
        # A quorum queue's count catches up with its confirms a moment later.
        queue = f"hopline.{service}.quarantine"

        async def counted() -> bool:
            declared = await channel.declare_queue(queue, passive=True)
            return (declared.declaration_result.message_count or 0) >= len(ids)

        await wait_until(counted, timeout_s=10, message=f"{queue} never counted {len(ids)}")
    finally:
        await connection.close()
    return ids
