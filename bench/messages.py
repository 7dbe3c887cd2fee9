"""What every scenario sends: 1 KiB persistent JSON messages shaped like hopline's own.

All parties (raw client, hopline, HTTP) move the same bytes with the same AMQP properties
through the same exchange, so their figures compare like with like.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson

from common.names import routing_key
from consumer.settings import ConsumerSettings

__all__ = [
    "BODY_BYTES",
    "MESSAGE_TYPE",
    "SERVICE",
    "amqp_message",
    "consumer_settings",
    "http_item",
    "key",
    "numbered_id",
    "payload",
    "work_queue",
]

SERVICE = "bench"
MESSAGE_TYPE = "bench.noop"
BODY_BYTES = 1024
_PAD = "x" * BODY_BYTES


def payload(index: int, sent_at: float | None = None) -> dict[str, Any]:
    """A JSON payload of exactly BODY_BYTES bytes that carries its index and send time."""
    head = {"i": index, "sent_at": time.time() if sent_at is None else sent_at, "pad": ""}
    room = BODY_BYTES - len(orjson.dumps(head))
    head["pad"] = _PAD[: max(room, 0)]
    return head


def numbered_id(index: int) -> str:
    """A message id another party can compute from the index alone: `UUID(int=index)`."""
    return str(uuid.UUID(int=index))


def amqp_message(
    index: int, sent_at: float | None = None, message_id: str | None = None
) -> aio_pika.Message:
    """The message hopline's producer would publish for `payload(index)`."""
    return aio_pika.Message(
        orjson.dumps(payload(index, sent_at)),
        message_id=message_id or str(uuid.uuid4()),
        type=MESSAGE_TYPE,
        content_type="application/json",
        timestamp=datetime.now(UTC),
        app_id="hopline-bench",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def http_item(index: int, priority: str = "normal") -> dict[str, Any]:
    return {"type": MESSAGE_TYPE, "payload": payload(index), "priority": priority}


def key(priority: str = "normal") -> str:
    return routing_key(priority, MESSAGE_TYPE)


def consumer_settings(amqp_url: str, queue_type: str, **overrides: Any) -> ConsumerSettings:
    return ConsumerSettings(
        amqp_url=amqp_url,
        queue_type=queue_type,
        handlers="bench:unused",
        retry_delays_s=[0.0],  # retries at once: the failure path measures its own cost
        log_format="json",
        **overrides,
    )


def work_queue(settings: ConsumerSettings, priority: str = "normal") -> str:
    return settings.names.work_queue(SERVICE, priority)
