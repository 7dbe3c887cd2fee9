"""What the broker did to a message on its own, as lifecycle events: pure, no I/O.

Two fates happen where no hopline process is there to speak (common.status.watch reads
the recorder's copies of them and publishes what this module decides):

    a copy from the unroutable fanout          -> `unroutable`
    a copy from the dead-letter exchange
      whose newest x-death is `delivery_limit` -> `quarantined` (DeliveryLimitExceeded)
      anything else                            -> nothing: a consumer's own quarantine copy
                                                  (no x-death) or its reject fallback
                                                  (`rejected`) was announced by that consumer
    either one without a message_id            -> `NoMessageId`: nobody can look it up

The source in the routing key `<source>.<event>` is the event's `service`. For
`unroutable` that is `producer`: DESIGN allows `producer` or a consuming service, and no
service ever saw the message; it never got past ingestion, the producer's side, like
`accepted` (a foreign publisher's message included: ingestion is the ingress exchange,
whoever published to it). For `quarantined` it is the service whose queue gave up, so a
subscriber to `<service>.quarantined` hears every quarantine of that service, whoever
noticed it.

`at` is when the recorder saw the copy, not the broker's x-death `time`: that has whole
seconds only, and would put the death before the last `started` of the same second in a
timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aio_pika.abc import AbstractIncomingMessage

from common import headers as h
from common.delays import scheduled_target
from common.envelope import original_routing_key
from common.events import PRODUCER_SOURCE, Event
from common.names import RoutingKeyError, parse_routing_key
from common.quarantine.failed import failed_from_delivery, latest_death

__all__ = ["BrokerFate", "NoMessageId", "delivery_limit_event", "unroutable_event"]

_DELIVERY_LIMIT = ("delivery_limit", b"delivery_limit")  # the broker's x-death reason


@dataclass(frozen=True, slots=True)
class NoMessageId:
    """A message the broker moved alone that carries no message_id: its status cannot be
    looked up, so it is counted and logged instead (the message itself is kept)."""

    event: str
    routing_key: str


BrokerFate = Event | NoMessageId | None


def unroutable_event(
    message: AbstractIncomingMessage,
    priorities: tuple[str, ...],
    unroutable_queue: str,
    now: datetime,
) -> BrokerFate:
    """The `unroutable` event of a copy from the unroutable fanout."""
    key = scheduled_target(original_routing_key(message))
    if not message.message_id:
        return NoMessageId("unroutable", key)
    return Event(
        event="unroutable",
        message_id=message.message_id,
        service=PRODUCER_SOURCE,
        type=_message_type(message.type, key, priorities),
        routing_key=key,
        attempt=h.read_attempt(message.headers),
        at=now,
        reason=(
            f"routing key {key!r} matched no binding: kept in {unroutable_queue} for an "
            "operator (hopline unroutable list, replay)"
        ),
        replay=h.read_replay_count(message.headers),
    )


def delivery_limit_event(
    message: AbstractIncomingMessage, priorities: tuple[str, ...], now: datetime
) -> BrokerFate:
    """The `quarantined` event of a copy from the dead-letter exchange, when the broker
    dead-lettered it for its delivery limit; None for every other dead letter."""
    if latest_death(message.headers or {}).get("reason") not in _DELIVERY_LIMIT:
        return None
    failed = failed_from_delivery(message)  # reads the broker's cause from the x-death
    key = scheduled_target(failed.routing_key)
    if not message.message_id:
        return NoMessageId("quarantined", key)
    return Event(
        event="quarantined",
        message_id=message.message_id,
        # The dead-letter routing key is the service's name (the work queue's argument).
        service=message.routing_key or "unknown",
        type=_message_type(message.type, key, priorities),
        routing_key=key,
        attempt=failed.attempts or 1,
        at=now,
        error_type=failed.error_type,
        error_message=failed.error_message,
        reason=failed.reason,
        replay=failed.replay_count,
    )


def _message_type(declared: str | None, key: str, priorities: tuple[str, ...]) -> str | None:
    """The `type` property, else the type in a well-formed key; None rather than a guess."""
    if declared:
        return declared
    try:
        return parse_routing_key(key, priorities)[1]
    except RoutingKeyError:
        return None
