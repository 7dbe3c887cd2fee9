"""The monotone state of a message per consuming service, decided purely from events.

Events arrive late, twice or out of order; the stored state is the one of the most advanced
event seen, so an old `started` never overwrites a newer `succeeded`. "Most advanced" is a
rank ordered by, in turn:

    replay   how many times the message was replayed from quarantine (a replay starts a
             new life: its attempt 1 comes after the last life's quarantine)
    attempt  the attempt the event is about (a retry's attempt 2 comes after attempt 1)
    phase    accepted/replayed/copied 0 < started 1 < retry_scheduled 2
             < succeeded/quarantined 3 < discarded 4
    at       the event's time, last (two runs of one attempt after a lost ack)

    accepted ──► processing ──► retrying ──► processing ──► succeeded
                      │                                  └─► quarantined ──► discarded
                      └──────────────────────────────────────────┘   └─► accepted (replayed)

    unroutable (phase 0): no binding matched the routing key; recorded for `producer`, the
    side that took it in, since no consuming service ever sees the message

A duplicate has the same rank and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from common.events import Event

__all__ = ["ServiceState", "format_at", "is_service_event", "rank", "state_of"]

ServiceState = Literal[
    "accepted", "processing", "retrying", "succeeded", "quarantined", "discarded", "unroutable"
]

_PHASE = {
    "accepted": 0,
    "replayed": 0,
    "copied": 0,
    "unroutable": 0,
    "started": 1,
    "retry_scheduled": 2,
    "succeeded": 3,
    "quarantined": 3,
    "discarded": 4,
}
_STATE: dict[str, ServiceState] = {
    "accepted": "accepted",
    "replayed": "accepted",
    "copied": "accepted",
    "unroutable": "unroutable",
    "started": "processing",
    "retry_scheduled": "retrying",
    "succeeded": "succeeded",
    "quarantined": "quarantined",
    "discarded": "discarded",
}
# Events about the message as a whole, not about a consuming service. `unroutable` is not
# one of them: no service will ever see the message, so it is the state of the event's
# `service`, `producer` (common.status.broker_fates), and a lookup shows where it is kept.
_MESSAGE_EVENTS = frozenset({"accepted"})


def format_at(at: datetime) -> str:
    """Fixed-width UTC text that sorts as time does (how the store keeps times)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    # %-formatting by hand: strftime was a tenth of the recorder's time.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        at.year,
        at.month,
        at.day,
        at.hour,
        at.minute,
        at.second,
        at.microsecond,
    )


def rank(event: Event, at: str | None = None) -> str:
    """A text that sorts as the event's place in its message's life (see the module doc);
    `at` is `format_at(event.at)` when the caller has it already."""
    at = at or format_at(event.at)
    return f"{event.replay:06d}|{event.attempt:06d}|{_PHASE[event.event]}|{at}"


def state_of(event: Event) -> ServiceState:
    return _STATE[event.event]


def is_service_event(event: Event) -> bool:
    """Whether the event moves a state per service (everything but `accepted`)."""
    return event.event not in _MESSAGE_EVENTS
