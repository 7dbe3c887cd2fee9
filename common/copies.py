"""Copies of a delivery for its next stop: the delay levels (a retry, or a hold until a
foreign publisher's deliver-at), or quarantine.

A copy keeps the body and the publisher's properties, and says in our `x-hopline-*`
headers where it came from and what happened to it: state about a message travels with
the message, never in a consumer's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika

from common import headers as h
from common.envelope import IncomingLike

__all__ = [
    "CopySource",
    "failure_copy",
    "held_copy",
    "kept_headers",
    "retry_copy",
]


class CopySource(IncomingLike, Protocol):
    """What a copy reads of a delivery: an aio-pika `IncomingMessage` or a consumer's
    `Delivery` (the same attribute names)."""

    @property
    def priority(self) -> int | None: ...
    @property
    def reply_to(self) -> str | None: ...


# The broker owns these; a copy published by a client must not carry a stale history.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def kept_headers(source: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every header but the broker's own dead-letter history."""
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


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """Where a delivery came from and what it is, as every copy of it says: what a consumer
    knows of a delivery before its handler runs."""

    origin_queue: str
    original_routing_key: str
    attempt: int
    message_type: str | None
    message_id: str | None


def held_copy(
    incoming: CopySource, context: DeliveryContext, *, attempt: int | None = None
) -> aio_pika.Message:
    """The copy that goes back to its origin queue (after a wait in the delay levels): with
    its attempt unchanged when it has not run (a hold until a foreign publisher's
    `deliver-at`, a deferral), or the next `attempt` for a retry."""
    headers = kept_headers(incoming.headers)
    headers[h.ATTEMPT] = context.attempt if attempt is None else attempt
    headers[h.ORIGIN_QUEUE] = context.origin_queue
    headers[h.ROUTING_KEY] = context.original_routing_key
    return _copy(incoming, headers, context.message_type, context.message_id)


def retry_copy(
    incoming: CopySource,
    context: DeliveryContext,
    *,
    next_attempt: int,
    error_type: str,
    error_message: str,
) -> aio_pika.Message:
    """The copy that waits in the delay levels and then goes back to its origin queue as its
    next attempt, saying what went wrong on this one."""
    copy = held_copy(incoming, context, attempt=next_attempt)
    copy.headers[h.ERROR_TYPE] = error_type
    copy.headers[h.ERROR_MESSAGE] = h.bounded(error_message, h.MAX_ERROR_MESSAGE_CHARS)
    return copy


def failure_copy(
    incoming: CopySource,
    context: DeliveryContext,
    *,
    error_type: str,
    error_message: str,
    traceback: str,
    reason: str,
    consumer: str,
    failed_at: datetime | None = None,
) -> aio_pika.Message:
    """The annotated copy for quarantine: everything a person needs to decide."""
    headers = kept_headers(incoming.headers)
    headers.update(
        {
            h.ATTEMPT: context.attempt,
            h.ORIGIN_QUEUE: context.origin_queue,
            h.ROUTING_KEY: context.original_routing_key,
            h.ERROR_TYPE: error_type,
            h.ERROR_MESSAGE: h.bounded(error_message, h.MAX_ERROR_MESSAGE_CHARS),
            h.ERROR_TRACEBACK: h.bounded_tail(traceback, h.MAX_TRACEBACK_CHARS),
            h.REASON: h.bounded(reason, h.MAX_ERROR_MESSAGE_CHARS),
            h.FAILED_AT: (failed_at or datetime.now(UTC)).isoformat(),
            h.CONSUMER: consumer,
        }
    )
    return _copy(incoming, headers, context.message_type, context.message_id)
