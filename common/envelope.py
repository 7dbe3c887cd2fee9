"""The message envelope and its mapping to and from AMQP properties, headers and body.

Publishing side: `new_envelope` + `to_message`. Consuming side: `decode_delivery`, which
accepts anything a foreign publisher may send and raises `UndecodableMessageError` with a
reason a person understands when it cannot make an envelope of it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aio_pika
import orjson

from common.errors import UndecodableMessageError
from common.headers import RESERVED_PREFIX, ROUTING_KEY
from common.names import RoutingKeyError, is_valid_message_type, parse_routing_key, routing_key

__all__ = [
    "JSON_CONTENT_TYPE",
    "Envelope",
    "IncomingLike",
    "decode_delivery",
    "encode_payload",
    "message_type_of",
    "new_envelope",
    "original_routing_key",
    "to_message",
]

JSON_CONTENT_TYPE = "application/json"
# Encodings that do not change the bytes: some clients put the charset here.
_PLAIN_ENCODINGS = frozenset({"", "identity", "utf-8", "utf8"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as handlers see it: a handler that takes `(payload, envelope)` gets one."""

    message_id: str
    """The AMQP `message_id` (a UUID made up when the publisher sent none); the same on every
    retry and redelivery: the key for recognising a duplicate."""
    message_type: str
    """Dotted lowercase, e.g. `orders.created`: the `type` property, else from the routing key."""
    payload: Any
    """The decoded JSON body (the raw value: a handler with a `model` receives the model)."""
    priority: str
    """The priority of the queue it came from (`high`, `normal`, `low` by default)."""
    correlation_id: str | None = None
    """The AMQP `correlation_id`, as the publisher set it."""
    headers: Mapping[str, Any] = field(default_factory=dict)
    """The publisher's AMQP headers (`traceparent`, your own), without hopline's `x-hopline-*`."""
    timestamp: datetime | None = None
    """When it was first published (the AMQP `timestamp`, second resolution), if set."""
    app_id: str | None = None
    """The publisher's `app_id` (`hopline-producer` for the HTTP producer)."""
    attempt: int = 1
    """1 on the first run; the retry's number after that (`x-hopline-attempt`), so a handler
    can tell its last attempt (`attempt == max_attempts`)."""
    redelivered: bool = False
    """A consumer got it before and did not settle it (crashed or lost its connection): the
    work may have been done already."""

    @property
    def routing_key(self) -> str:
        return routing_key(self.priority, self.message_type)


def new_envelope(
    message_type: str,
    payload: Any,
    priority: str,
    *,
    app_id: str,
    correlation_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> Envelope:
    return Envelope(
        message_id=message_id or str(uuid.uuid4()),
        message_type=message_type,
        payload=payload,
        priority=priority,
        correlation_id=correlation_id,
        headers=dict(headers or {}),
        timestamp=datetime.now(UTC),
        app_id=app_id,
    )


def encode_payload(payload: Any) -> bytes:
    """UTF-8 JSON; raises ValueError for what cannot be (e.g. a lone surrogate in a string)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which JSON allows: exact text from `json`.
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()


def to_message(envelope: Envelope, body: bytes | None = None) -> aio_pika.Message:
    """The persistent AMQP message for an envelope (`body` if the caller already encoded it)."""
    return aio_pika.Message(
        body if body is not None else encode_payload(envelope.payload),
        message_id=envelope.message_id,
        correlation_id=envelope.correlation_id,
        type=envelope.message_type,
        content_type=JSON_CONTENT_TYPE,
        timestamp=envelope.timestamp,
        app_id=envelope.app_id,
        headers=dict(envelope.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class IncomingLike(Protocol):
    """The parts of an aio-pika `IncomingMessage` that decoding reads."""

    @property
    def body(self) -> bytes: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def content_encoding(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def routing_key(self) -> str | None: ...
    @property
    def headers(self) -> Any: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def app_id(self) -> str | None: ...


def original_routing_key(incoming: IncomingLike) -> str:
    """The key it was first published with: a retry or replay travels under another key."""
    headers = incoming.headers or {}
    original = headers.get(ROUTING_KEY)
    if isinstance(original, bytes):
        original = original.decode("utf-8", "replace")
    if isinstance(original, str) and original:
        return original
    return incoming.routing_key or ""


def decode_delivery(
    incoming: IncomingLike,
    *,
    priority: str,
    priorities: tuple[str, ...],
    attempt: int = 1,
    redelivered: bool = False,
) -> Envelope:
    """Make an envelope of a delivery from a queue of `priority`, or say why it cannot be one.

    `attempt` and `redelivered` are what the consumer read of the delivery, for the handler.
    """
    _check_content_type(incoming.content_type)
    _check_content_encoding(incoming.content_encoding)
    message_type = message_type_of(incoming, priorities)
    if not incoming.body:
        raise UndecodableMessageError("empty body: expected a JSON document")
    try:
        payload = orjson.loads(incoming.body)
    except orjson.JSONDecodeError as exc:
        raise UndecodableMessageError(f"body is not valid JSON: {exc}") from exc
    headers = incoming.headers or {}
    return Envelope(
        message_id=incoming.message_id or str(uuid.uuid4()),
        message_type=message_type,
        payload=payload,
        priority=priority,
        correlation_id=incoming.correlation_id,
        headers={k: v for k, v in headers.items() if not k.startswith(RESERVED_PREFIX)},
        timestamp=incoming.timestamp,
        app_id=incoming.app_id,
        attempt=attempt,
        redelivered=redelivered,
    )


def _check_content_type(content_type: str | None) -> None:
    if not content_type:
        return  # foreign publishers often send a bare body; we try JSON
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_CONTENT_TYPE or media_type.endswith("+json"):
        return
    raise UndecodableMessageError(
        f"content type {content_type!r} is not JSON: hopline carries application/json bodies"
    )


def _check_content_encoding(content_encoding: str | None) -> None:
    if content_encoding is None or content_encoding.strip().lower() in _PLAIN_ENCODINGS:
        return
    raise UndecodableMessageError(
        f"content encoding {content_encoding!r} is not supported: publish uncompressed JSON"
    )


def message_type_of(incoming: IncomingLike, priorities: tuple[str, ...]) -> str:
    """The `type` property, else the type in the original routing key; raises
    `UndecodableMessageError` when neither is a valid type."""
    declared = incoming.type
    if declared:
        if not is_valid_message_type(declared):
            raise UndecodableMessageError(
                f"message type {declared!r} is invalid: expected dotted lowercase words"
            )
        return declared
    try:
        _, message_type = parse_routing_key(original_routing_key(incoming), priorities)
    except RoutingKeyError as exc:
        raise UndecodableMessageError(f"no type property, and {exc}") from exc
    return message_type
