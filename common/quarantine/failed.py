"""A quarantined (or unroutable) message as an operator sees it.

Parsing is pure: `failed_from_delivery` reads what the consumer wrote in `x-hopline-*`
headers and, for messages the broker dead-lettered itself (delivery limit, reject), what the
broker wrote in `x-death`, whichever happened last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage

from common import headers as h

__all__ = [
    "PROPERTY_NAMES",
    "FailedMessage",
    "failed_from_delivery",
    "latest_death",
    "parse_time",
]

PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "message_id",
    "type",
    "app_id",
    "priority",
)


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """Everything about one failed message; `id` is its message id (or a body digest)."""

    id: str
    body: bytes
    routing_key: str
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]
    timestamp: datetime | None = None
    message_type: str | None = None
    origin_queue: str | None = None
    attempts: int | None = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    reason: str = ""
    failed_at: datetime | None = None
    consumer: str | None = None
    replay_count: int = 0
    delivery_tag: int | None = field(default=None, compare=False)

    @property
    def error_first_line(self) -> str:
        first = (self.error_message or self.reason).strip().splitlines()
        return first[0] if first else ""

    @property
    def failed_again_after_replay(self) -> bool:
        return self.replay_count > 0

    def payload_text(self) -> str:
        """The body pretty-printed when it is JSON, else as text, else as hex."""
        try:
            return orjson.dumps(orjson.loads(self.body), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            try:
                return self.body.decode("utf-8")
            except UnicodeDecodeError:
                return f"<{len(self.body)} bytes, not UTF-8> {self.body[:256].hex()}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return int(_text(value)) if value is not None else None
    except ValueError:
        return None


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _text(value)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _digest_id(body: bytes, routing_key: str) -> str:
    return "sha-" + hashlib.sha256(routing_key.encode() + b"\0" + body).hexdigest()[:16]


def latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The broker's newest `x-death` entry (it keeps the newest first), or `{}`."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def failed_from_delivery(incoming: AbstractIncomingMessage) -> FailedMessage:
    headers: Mapping[str, Any] = incoming.headers or {}
    death = latest_death(headers)
    death_queue = _text(death.get("queue")) or None
    routing_key = (
        _text(headers.get(h.ROUTING_KEY))
        or _death_routing_key(death)
        or (incoming.routing_key or "")
    )
    error_type = _text(headers.get(h.ERROR_TYPE))
    error_message = _text(headers.get(h.ERROR_MESSAGE))
    reason = _text(headers.get(h.REASON))
    failed_at = parse_time(headers.get(h.FAILED_AT))
    broker = _broker_cause(death, failed_at, _int(headers.get("x-delivery-count")))
    if broker is not None:
        # The broker dead-lettered it after whatever our headers describe: its cause is the
        # latest, and the headers' error (an earlier retry's, if any) is only context.
        previous = f"{error_type}: {error_message}" if error_type else ""
        error_type, reason = broker
        error_message = reason
        if previous:
            error_message += f"; the attempt before failed with {previous}"
        failed_at = parse_time(death.get("time")) or failed_at
    properties = {name: getattr(incoming, name) for name in PROPERTY_NAMES}
    return FailedMessage(
        id=incoming.message_id or _digest_id(incoming.body, routing_key),
        body=incoming.body,
        routing_key=routing_key,
        headers=dict(headers),
        properties=properties,
        timestamp=incoming.timestamp,
        message_type=incoming.type or _type_from_key(routing_key),
        origin_queue=_text(headers.get(h.ORIGIN_QUEUE)) or death_queue,
        attempts=h.read_attempt(headers),
        error_type=error_type,
        error_message=error_message,
        traceback=_text(headers.get(h.ERROR_TRACEBACK)) if broker is None else "",
        reason=reason,
        failed_at=failed_at,
        consumer=_text(headers.get(h.CONSUMER)) or None,
        replay_count=_int(headers.get(h.REPLAY_COUNT)) or 0,
        delivery_tag=incoming.delivery_tag,
    )


# What the broker's own dead-lettering reasons mean for a message taken from a work queue.
_BROKER_CAUSES = {
    "delivery_limit": (
        "DeliveryLimitExceeded",
        "delivery_limit: delivered {count} without being settled: a consumer process crashed "
        "or lost its connection while handling it each time, and the broker dead-lettered it",
    ),
    "rejected": (
        "RejectedAfterCopyFailed",
        "rejected: the consumer could not get a retry or quarantine copy of it confirmed and "
        "rejected it, so the broker dead-lettered it",
    ),
    "expired": ("Expired", "expired: its TTL expired in {queue}"),
    "maxlen": ("QueueFull", "maxlen: its queue {queue} was full"),
}


def _broker_cause(
    death: Mapping[str, Any], failed_at: datetime | None, delivery_count: int | None
) -> tuple[str, str] | None:
    """(error type, reason) when the broker's dead-lettering is the latest thing that happened
    to the message: consumer copies carry no `x-death` of their own, so an entry newer than
    our `x-hopline-failed-at` (or with none) is the broker's doing."""
    cause = _BROKER_CAUSES.get(_text(death.get("reason")))
    if cause is None:
        return None
    died_at = parse_time(death.get("time"))
    if failed_at is not None and (died_at is None or died_at < failed_at.replace(microsecond=0)):
        return None
    count = f"{delivery_count + 1} times" if delivery_count else "too many times"
    queue = _text(death.get("queue")) or "its queue"
    return cause[0], cause[1].format(count=count, queue=queue)


def _death_routing_key(death: Mapping[str, Any]) -> str:
    keys = death.get("routing-keys")
    if isinstance(keys, list | tuple) and keys:
        return _text(keys[0])
    return ""


def _type_from_key(routing_key: str) -> str | None:
    _, dot, message_type = routing_key.partition(".")
    return message_type if dot and message_type else None
