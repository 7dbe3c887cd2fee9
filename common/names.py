"""Every broker-side name hopline uses, from pure helpers (never f-strings at call sites)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "MESSAGE_TYPE_PATTERN",
    "Names",
    "RoutingKeyError",
    "format_delay",
    "is_valid_message_type",
    "parse_routing_key",
    "routing_key",
    "topic_matches",
]

# Dotted lowercase words: "orders.created", "billing.invoice_paid".
MESSAGE_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$"
_MESSAGE_TYPE_RE = re.compile(MESSAGE_TYPE_PATTERN)


class RoutingKeyError(ValueError):
    """A routing key that is not `<priority>.<message type>`."""


@functools.lru_cache(maxsize=4096)
def is_valid_message_type(message_type: str) -> bool:
    # Cached: consumers check the type of every delivery, and a service sees few types.
    return len(message_type) <= 200 and _MESSAGE_TYPE_RE.fullmatch(message_type) is not None


def routing_key(priority: str, message_type: str) -> str:
    """`high` + `orders.created` -> `high.orders.created`."""
    return f"{priority}.{message_type}"


def parse_routing_key(key: str, priorities: tuple[str, ...]) -> tuple[str, str]:
    """Split `<priority>.<type>`; raises RoutingKeyError with a reason a person understands."""
    priority, dot, message_type = key.partition(".")
    if not dot or not message_type:
        raise RoutingKeyError(
            f"routing key {key!r} has no message type: expected '<priority>.<type>'"
        )
    if priority not in priorities:
        raise RoutingKeyError(
            f"routing key {key!r} starts with unknown priority {priority!r}; "
            f"expected one of {', '.join(priorities)}"
        )
    if not is_valid_message_type(message_type):
        raise RoutingKeyError(
            f"routing key {key!r} carries an invalid message type {message_type!r}: "
            "expected dotted lowercase words"
        )
    return priority, message_type


def topic_matches(pattern: str, message_type: str) -> bool:
    """AMQP topic matching of a type pattern (`*` one word, `#` zero or more words)."""
    return _match_words(pattern.split("."), message_type.split("."))


def _match_words(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match_words(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    if head in ("*", words[0]):
        return _match_words(rest, words[1:])
    return False


def format_delay(delay_s: float) -> str:
    """A delay as an operator reads it: 1 -> `1s`, 120 -> `2m`, 3600 -> `1h`."""
    if delay_s <= 0:
        raise ValueError(f"a retry delay must be positive, got {delay_s}")
    if delay_s < 1:
        return f"{round(delay_s * 1000)}ms"
    seconds = round(delay_s)
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class Names:
    """Names under one prefix (default `hopline`), as DESIGN.md fixes them."""

    prefix: str = "hopline"

    @property
    def ingress(self) -> str:
        return f"{self.prefix}.ingress"

    @property
    def unroutable(self) -> str:
        """Both the fanout alternate exchange and the queue behind it."""
        return f"{self.prefix}.unroutable"

    @property
    def delay(self) -> str:
        """Where delayed messages enter: the exchange in front of the highest level."""
        return f"{self.prefix}.delay"

    def delay_level(self, level: int) -> str:
        """Level n's exchange and its queue (TTL 2^n s): the same name for both."""
        return f"{self.delay}.{level}"

    @property
    def delay_due(self) -> str:
        """Where a delayed message goes when its time has come (common.delays)."""
        return f"{self.delay}.due"

    @property
    def legacy_retry(self) -> str:
        """The retry tiers' exchange before the delay levels; gone once they are drained."""
        return f"{self.prefix}.retry"

    @property
    def requeue(self) -> str:
        return f"{self.prefix}.requeue"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def events(self) -> str:
        """The lifecycle events exchange (topic, `<source>.<event>`)."""
        return f"{self.prefix}.events"

    @property
    def status(self) -> str:
        """The status recorder's queue: every lifecycle event, waiting to be recorded."""
        return f"{self.prefix}.status"

    @property
    def status_unroutable(self) -> str:
        """The status recorder's own copy of each unroutable message (a second queue behind
        the unroutable fanout), from which it says `unroutable`; the operators' queue keeps
        the message itself."""
        return f"{self.status}.unroutable"

    @property
    def status_dead_letters(self) -> str:
        """The status recorder's own copy of what reaches the dead-letter exchange (bound per
        service), from which it says `quarantined` for the broker's delivery-limit deaths."""
        return f"{self.status}.dead-letters"

    def legacy_retry_queue(self, delay_s: float) -> str:
        """A retry tier queue of a version before the delay levels (e.g. `hopline.retry.5s`)."""
        return f"{self.legacy_retry}.{format_delay(delay_s)}"

    def work_queue(self, service: str, priority: str) -> str:
        return f"{self.prefix}.{service}.{priority}"

    def quarantine(self, service: str) -> str:
        return f"{self.prefix}.{service}.quarantine"

    def holds_failures(self, queue: str) -> bool:
        """A quarantine queue of this prefix, or the unroutable queue: where archives come
        from, and so the only queues an archive may be imported into."""
        if queue == self.unroutable:
            return True
        service, dot, tail = queue.removeprefix(f"{self.prefix}.").partition(".")
        return (
            queue.startswith(f"{self.prefix}.")
            and bool(dot)
            and tail == "quarantine"
            and is_valid_message_type(service)
            and "." not in service
        )
