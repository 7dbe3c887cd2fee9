"""Lifecycle events: what happened to a message, as DESIGN.md fixes the body.

An event is published to `<prefix>.events` with routing key `<source>.<event>` (source:
`producer` or the consuming service). The body is JSON with `event`, `message_id`,
`service`, `type`, `routing_key`, `attempt`, `at` (UTC, RFC 3339) and, as the event needs,
`error_type`, `error_message`, `delay_s`, `reason`, `result`, `copy_of`. hopline adds
`replay` (how many times the message was replayed from quarantine), which orders a
replayed message's second life after its first (common.status.states), and `started_at`:
a consumer announces a handler's start with its own `started` event only once the handler
has run for HOPLINE_EVENTS_STARTED_AFTER_S; a handler done sooner has its start carried by
the event that ends the attempt (`started_event()` gives it back), one event instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson

from common.errors import HoplineError

__all__ = [
    "EVENT_NAMES",
    "PRODUCER_SOURCE",
    "Event",
    "EventName",
    "InvalidEventError",
    "bounded_result",
    "event_routing_key",
]

EventName = Literal[
    "accepted",
    "started",
    "succeeded",
    "retry_scheduled",
    "quarantined",
    "replayed",
    "copied",
    "discarded",
    "unroutable",
]
EVENT_NAMES: frozenset[str] = frozenset(get_args(EventName))
PRODUCER_SOURCE = "producer"


class InvalidEventError(HoplineError):
    """A body on the events exchange that is not a lifecycle event."""


def event_routing_key(source: str, event: str) -> str:
    """`demo` + `succeeded` -> `demo.succeeded`."""
    return f"{source}.{event}"


@dataclass(frozen=True, slots=True)
class Event:
    event: EventName
    message_id: str
    service: str
    type: str | None
    routing_key: str | None
    attempt: int
    at: datetime
    error_type: str | None = None
    error_message: str | None = None
    delay_s: float | None = None
    reason: str | None = None
    result: Any = None
    copy_of: str | None = None
    replay: int = 0
    started_at: datetime | None = None

    def to_json(self) -> bytes:
        # Built by hand: dataclasses.asdict() was most of an event's cost on the hot path.
        body: dict[str, Any] = {
            "event": self.event,
            "message_id": self.message_id,
            "service": self.service,
            "type": self.type,
            "routing_key": self.routing_key,
            "attempt": self.attempt,
            "at": self.at,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.replay:
            body["replay"] = self.replay
        if self.started_at is not None:
            body["started_at"] = self.started_at
        return orjson.dumps(body, option=orjson.OPT_UTC_Z)

    @classmethod
    def from_json(cls, body: bytes) -> Event:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidEventError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidEventError("not a JSON object")
        try:
            name = data["event"]
            if name not in EVENT_NAMES:
                raise InvalidEventError(f"unknown event {name!r}")
            at = datetime.fromisoformat(str(data["at"]))
            if at.tzinfo is None:
                raise InvalidEventError("`at` has no time zone")
            started_at = _optional_time(data.get("started_at"))
            return cls(
                event=name,
                message_id=_text(data["message_id"]),
                service=_text(data["service"]),
                type=_optional_text(data.get("type")),
                routing_key=_optional_text(data.get("routing_key")),
                attempt=int(data.get("attempt", 1)),
                at=at.astimezone(UTC),
                error_type=_optional_text(data.get("error_type")),
                error_message=_optional_text(data.get("error_message")),
                delay_s=float(data["delay_s"]) if data.get("delay_s") is not None else None,
                reason=_optional_text(data.get("reason")),
                result=data.get("result"),
                copy_of=_optional_text(data.get("copy_of")),
                replay=int(data.get("replay", 0)),
                started_at=started_at,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEventError(f"missing or malformed field: {exc}") from exc

    def started_event(self) -> Event | None:
        """The `started` this event carries in `started_at`, as its own event; else None."""
        if self.started_at is None:
            return None
        return Event(
            event="started",
            message_id=self.message_id,
            service=self.service,
            type=self.type,
            routing_key=self.routing_key,
            attempt=self.attempt,
            at=self.started_at,
            replay=self.replay,
        )


_OPTIONAL = ("error_type", "error_message", "delay_s", "reason", "result", "copy_of")


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _optional_time(value: object) -> datetime | None:
    if value is None:
        return None
    at = datetime.fromisoformat(str(value))
    if at.tzinfo is None:
        raise ValueError("`started_at` has no time zone")
    return at.astimezone(UTC)


def bounded_result(value: Any, max_bytes: int) -> Any:
    """A handler's return value as it may travel in an event: the value itself when it is
    JSON and at most `max_bytes` encoded, else a string saying why it is not there."""
    if value is None:
        return None
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        return f"<result of type {type(value).__name__} is not JSON-serialisable>"
    if len(encoded) > max_bytes:
        return (
            f"<result of {len(encoded)} bytes as JSON is over the limit of {max_bytes} "
            "(HOPLINE_MAX_RESULT_BYTES)>"
        )
    return value
