"""One delivery as the broker sent it, read straight from aiormq's frames.

The consumer takes deliveries one layer below aio-pika's `IncomingMessage`: building that
object (it copies every property through a guarded `__setattr__`) and the extra task aio-pika
starts for each message are a measurable share of a drain (bench/README.md). `Delivery`
reads the same values lazily from the decoded frames, under aio-pika's attribute names, so
envelope decoding and the retry/quarantine copies accept it as they accept an
`IncomingMessage`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

__all__ = ["Delivery"]


class Delivery:
    """A delivery from the work queue `queue`, which holds messages of `queue_priority`."""

    __slots__ = (
        "_deliver",
        "_properties",
        "body",
        "channel",
        "delivery_tag",
        "queue",
        "queue_priority",
        "rank",
    )

    def __init__(self, raw: DeliveredMessage, queue: str, queue_priority: str, rank: int) -> None:
        # basic.deliver, or basic.get-ok during probation (consumer.isolation): same fields.
        deliver = cast(Basic.Deliver, raw.delivery)
        self._deliver = deliver
        self._properties: Basic.Properties = raw.header.properties
        self.body: bytes = raw.body
        self.channel: AbstractChannel = raw.channel
        self.delivery_tag: int = cast(int, deliver.delivery_tag)  # 1, 2, ... per channel
        self.queue = queue
        self.queue_priority = queue_priority
        self.rank = rank  # 0 is the highest priority

    @property
    def routing_key(self) -> str:
        return self._deliver.routing_key or ""

    @property
    def redelivered(self) -> bool:
        """The broker delivered it before (to a consumer that crashed or lost its channel)."""
        return bool(self._deliver.redelivered)

    @property
    def headers(self) -> dict[str, Any]:
        return self._properties.headers or {}

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    @property
    def content_encoding(self) -> str | None:
        return self._properties.content_encoding

    @property
    def type(self) -> str | None:
        return self._properties.message_type

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def correlation_id(self) -> str | None:
        return self._properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._properties.reply_to

    @property
    def priority(self) -> int | None:
        """The AMQP `priority` property (a number); the queue's priority is `queue_priority`."""
        return self._properties.priority

    @property
    def timestamp(self) -> datetime | None:
        return self._properties.timestamp

    @property
    def app_id(self) -> str | None:
        return self._properties.app_id

    def __repr__(self) -> str:
        return f"<Delivery {self.queue}#{self.delivery_tag} id={self.message_id!r}>"
