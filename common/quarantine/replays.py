"""Copies of a quarantined or unroutable message for its way back: a replay to the queue it
failed in, or the message as it arrived, to publish again under another routing key."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aio_pika

from common import headers as h
from common.copies import kept_headers
from common.quarantine.failed import FailedMessage

__all__ = ["forward_copy", "replay_copy"]


# Headers that describe the last failure; a replayed message starts clean.
_FAILURE_HEADERS = (
    h.ERROR_TYPE,
    h.ERROR_MESSAGE,
    h.ERROR_TRACEBACK,
    h.REASON,
    h.FAILED_AT,
    h.CONSUMER,
)


def replay_copy(
    message: FailedMessage,
    *,
    replayed_at: datetime,
    body: bytes | None = None,
    extra_headers: Mapping[str, Any] | None = None,
    new_message_id: str | None = None,
) -> aio_pika.Message:
    """The copy that goes back to its origin queue: attempt 1, the replay counted.

    With `new_message_id` it is an edited copy, which records the id it was made from.
    """
    headers = {
        key: value
        for key, value in kept_headers(message.headers).items()
        if key not in _FAILURE_HEADERS
    }
    headers.update(extra_headers or {})
    headers[h.ATTEMPT] = 1
    headers[h.ORIGIN_QUEUE] = message.origin_queue
    headers[h.ROUTING_KEY] = message.routing_key
    headers[h.REPLAY_COUNT] = message.replay_count + 1
    headers[h.REPLAYED_AT] = replayed_at.isoformat()
    if new_message_id is not None:
        headers[h.EDITED_FROM] = message.id
    properties = dict(message.properties)
    properties["message_id"] = new_message_id or properties.get("message_id") or message.id
    properties["type"] = properties.get("type") or message.message_type
    return aio_pika.Message(
        message.body if body is None else body,
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=message.timestamp,
        **properties,
    )


def forward_copy(message: FailedMessage) -> aio_pika.Message:
    """An unroutable message as it arrived, to publish again under another routing key."""
    return aio_pika.Message(
        message.body,
        headers=kept_headers(message.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=message.timestamp,
        **message.properties,
    )
