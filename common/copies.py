"""Copies of a delivery for its next stop (a retry tier, quarantine, its queue again).

A copy keeps the body and the publisher's properties, and says in our `x-hopline-*`
headers where it came from and what happened to it: state about a message travels with
the message, never in a consumer's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika

from common import headers as h
from common.envelope import IncomingLike
from common.failed import EDITED_FROM, REPLAY_COUNT, REPLAYED_AT, FailedMessage

__all__ = ["CopySource", "failure_copy", "forward_copy", "replay_copy", "retry_copy"]


class CopySource(IncomingLike, Protocol):
    """What a copy reads of a delivery: an aio-pika `IncomingMessage` or a consumer's
    `Delivery` (the same attribute names)."""

    @property
    def priority(self) -> int | None: ...
    @property
    def reply_to(self) -> str | None: ...


# The broker owns these; a copy published by a client must not carry a stale history.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def _kept_headers(source: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: value for key, value in (source or {}).items() if not key.startswith(_BROKER_HEADERS)
    }


def _copy(
    incoming: CopySource,
    headers: dict[str, Any],
    message_type: str | None,
    message_id: str | None,
) -> aio_pika.Message:
    return aio_pika.Message(
        incoming.body,
        headers=headers,
        content_type=incoming.content_type,
        content_encoding=incoming.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=incoming.priority,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        message_id=message_id or incoming.message_id,
        timestamp=incoming.timestamp,
        type=message_type or incoming.type,
        user_id=None,  # the broker checks user_id against the publisher's login
        app_id=incoming.app_id,
    )


def retry_copy(
    incoming: CopySource,
    *,
    origin_queue: str,
    original_routing_key: str,
    next_attempt: int,
    message_type: str | None,
    message_id: str | None,
    error_type: str,
    error_message: str,
) -> aio_pika.Message:
    """The copy that waits in a retry tier and then goes back to `origin_queue`."""
    headers = _kept_headers(incoming.headers)
    headers[h.ATTEMPT] = next_attempt
    headers[h.ORIGIN_QUEUE] = origin_queue
    headers[h.ROUTING_KEY] = original_routing_key
    headers[h.ERROR_TYPE] = error_type
    headers[h.ERROR_MESSAGE] = h.bounded(error_message, h.MAX_ERROR_MESSAGE_CHARS)
    return _copy(incoming, headers, message_type, message_id)


def failure_copy(
    incoming: CopySource,
    *,
    origin_queue: str,
    original_routing_key: str,
    attempt: int,
    message_type: str | None,
    message_id: str | None,
    error_type: str,
    error_message: str,
    traceback: str,
    reason: str,
    consumer: str,
    failed_at: datetime | None = None,
) -> aio_pika.Message:
    """The annotated copy for quarantine: everything a person needs to decide."""
    headers = _kept_headers(incoming.headers)
    headers.update(
        {
            h.ATTEMPT: attempt,
            h.ORIGIN_QUEUE: origin_queue,
            h.ROUTING_KEY: original_routing_key,
            h.ERROR_TYPE: error_type,
            h.ERROR_MESSAGE: h.bounded(error_message, h.MAX_ERROR_MESSAGE_CHARS),
            h.ERROR_TRACEBACK: h.bounded_tail(traceback, h.MAX_TRACEBACK_CHARS),
            h.REASON: h.bounded(reason, h.MAX_ERROR_MESSAGE_CHARS),
            h.FAILED_AT: (failed_at or datetime.now(UTC)).isoformat(),
            h.CONSUMER: consumer,
        }
    )
    return _copy(incoming, headers, message_type, message_id)


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
        for key, value in _kept_headers(message.headers).items()
        if key not in _FAILURE_HEADERS
    }
    headers.update(extra_headers or {})
    headers[h.ATTEMPT] = 1
    headers[h.ORIGIN_QUEUE] = message.origin_queue
    headers[h.ROUTING_KEY] = message.routing_key
    headers[REPLAY_COUNT] = message.replay_count + 1
    headers[REPLAYED_AT] = replayed_at.isoformat()
    if new_message_id is not None:
        headers[EDITED_FROM] = message.id
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
        headers=_kept_headers(message.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=message.timestamp,
        **message.properties,
    )
