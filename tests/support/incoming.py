"""A delivery as aio-pika hands it over, without a broker: for pure functions of a message."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

__all__ = ["incoming"]


def incoming(
    headers: dict[str, Any] | None = None,
    *,
    routing_key: str = "orders",
    message_id: str | None = "m-1",
    message_type: str | None = "orders.created",
    body: bytes = b'{"n": 1}',
) -> AbstractIncomingMessage:
    return cast(
        AbstractIncomingMessage,
        SimpleNamespace(
            body=body,
            headers=headers or {},
            routing_key=routing_key,
            message_id=message_id,
            timestamp=None,
            type=message_type,
            content_type="application/json",
            content_encoding=None,
            correlation_id=None,
            reply_to=None,
            app_id=None,
            priority=None,
            delivery_tag=7,
        ),
    )
