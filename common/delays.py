"""Delays in the broker by binary levels: the routing key carries the delay's bits.

Level n is a topic exchange and a quorum queue `hopline.delay.<n>` whose messages live
2^n seconds. A delayed message's routing key is its delay in whole seconds as 28 bit words,
most significant first, followed by where it goes when its time comes:

    9 s = 0b1001  ->  0.0.….0.1.0.0.1.high.orders.created     (scheduled: routed by type)
                      0.0.….0.1.0.0.1.requeue                   (a retry: back to its queue)

Each level's exchange sends a message whose bit n is 1 into its queue, and one whose bit n
is 0 straight on to level n-1; the queue dead-letters (at least once) into level n-1 when
the TTL expires. After level 0 the message reaches `hopline.delay.due`, where the bindings
take the 28 bit words off by position (28 times `*`), not by a `#` prefix: `high.#` then never
matches a delayed `normal.high.x`, which a `#.high.#` binding would. A delay costs one queue
hop per 1 bit, at most 28, and no process memory.

This module is pure: the keys and binding patterns, from which `common.topology` builds the
objects and the publishers build their keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.headers import DELIVER_AT
from common.names import Names
from common.quarantine.failed import parse_time

__all__ = [
    "DELAY_LEVELS",
    "MAX_DELAY_S",
    "REQUEUE_TARGET",
    "DelayError",
    "delay_bucket",
    "delay_exchanges",
    "delay_route",
    "delay_routing_key",
    "due_binding_key",
    "held_for",
    "level_bindings",
    "level_ttl_ms",
    "levels_of",
    "publish_route",
    "scheduled_target",
    "seconds_until",
    "whole_seconds",
]

DELAY_LEVELS = 28
MAX_DELAY_S = 2**DELAY_LEVELS - 1  # 8.5 years
# The routing key's tail for a copy that goes back to the queue its `x-hopline-queue` header
# names (through `hopline.requeue`), whatever its original routing key.
REQUEUE_TARGET = "requeue"
_MAX_ROUTING_KEY_BYTES = 255  # AMQP 0-9-1 shortstr
_LEVEL_QUEUE = re.compile(r"\.delay\.\d+$")  # `<prefix>.delay.<n>`, whatever the prefix


class DelayError(ValueError):
    """A delay that cannot be carried out: negative, too long, or a key too long to carry."""


def whole_seconds(delay_s: float) -> int:
    """A delay in whole seconds, rounded up: a delayed message never arrives early."""
    if not math.isfinite(delay_s) or delay_s < 0:
        raise DelayError(f"a delay must be a number of seconds >= 0, got {delay_s}")
    seconds = math.ceil(delay_s)
    if seconds > MAX_DELAY_S:
        raise DelayError(
            f"a delay of {delay_s:g} s is longer than the longest, {MAX_DELAY_S} s "
            "(about 8.5 years)"
        )
    return seconds


def seconds_until(deliver_at: datetime, now: datetime) -> float:
    """The delay for an absolute time; `DelayError` for a time in the past."""
    delay_s = (deliver_at - now).total_seconds()
    if delay_s < 0:
        raise DelayError(f"deliver_at {deliver_at.isoformat()} is in the past")
    return delay_s


def levels_of(delay_s: float) -> tuple[int, ...]:
    """The levels a message waits in, highest first: 9 s -> (3, 0)."""
    seconds = whole_seconds(delay_s)
    return tuple(n for n in reversed(range(DELAY_LEVELS)) if seconds >> n & 1)


def delay_routing_key(delay_s: float, target: str) -> str:
    """`<28 bit words>.<target>`; target is `<priority>.<type>` or `REQUEUE_TARGET`."""
    seconds = whole_seconds(delay_s)
    bits = ".".join("1" if seconds >> n & 1 else "0" for n in reversed(range(DELAY_LEVELS)))
    key = f"{bits}.{target}"
    if len(key.encode()) > _MAX_ROUTING_KEY_BYTES:
        raise DelayError(
            f"routing key {target!r} is too long to be delayed: with the delay's "
            f"{len(bits) + 1} characters it exceeds AMQP's {_MAX_ROUTING_KEY_BYTES} bytes"
        )
    return key


def scheduled_target(routing_key: str) -> str:
    """What a delayed key is routed by when it is due (`0.….0.1.high.x` -> `high.x`); any
    other key as it is. A delay exchange's alternate sends a key no service binds to the
    unroutable queue with its bit words still in front."""
    words = routing_key.split(".", DELAY_LEVELS)
    if len(words) > DELAY_LEVELS and all(word in ("0", "1") for word in words[:DELAY_LEVELS]):
        return words[DELAY_LEVELS]
    return routing_key


def level_ttl_ms(level: int) -> int:
    return (1 << level) * 1000


def level_bindings(level: int) -> tuple[str, str]:
    """Level `level`'s exchange patterns: (into its own queue, on to the next level)."""
    before = "*." * (DELAY_LEVELS - 1 - level)
    return f"{before}1.#", f"{before}0.#"


def due_binding_key(target_pattern: str) -> str:
    """The binding on `hopline.delay.due` for a target: the bit words matched by position."""
    return "*." * DELAY_LEVELS + target_pattern


def delay_bucket(delay_s: float) -> str:
    """A bounded label for a delay (metrics): the power of two it is at most, `le_8s`."""
    seconds = whole_seconds(delay_s)
    return f"le_{1 << (seconds - 1).bit_length() if seconds else 0}s"


def delay_route(names: Names, delay_s: float, target: str) -> tuple[str, str]:
    """(exchange, routing key) into the delay levels. The message enters at the level of its
    delay's highest 1 bit, `due` for no delay: the levels above would only pass it on, and
    each exchange-to-exchange step costs the broker a topic match (entering at the top, 1 s
    retries moved 273 copies per second instead of 3 378: bench/README.md)."""
    seconds = whole_seconds(delay_s)
    key = delay_routing_key(seconds, target)
    return (names.delay_level(seconds.bit_length() - 1) if seconds else names.delay_due), key


def delay_exchanges(names: Names) -> tuple[str, ...]:
    """Every exchange `delay_route` may answer: the levels and `due`."""
    return (*(names.delay_level(level) for level in range(DELAY_LEVELS)), names.delay_due)


def publish_route(names: Names, routing_key: str, delay_s: float | None) -> tuple[str, str]:
    """(exchange, routing key) for a message published now or after `delay_s`: the ingress
    directly, or the delay levels, which route it by `routing_key` when it is due."""
    if not delay_s:
        return names.ingress, routing_key
    return delay_route(names, delay_s, routing_key)


def held_for(headers: Mapping[str, Any] | None, now: datetime | None = None) -> float | None:
    """Seconds a delivery must still wait, as a foreign publisher asked with `DELIVER_AT`
    on a plain publish to the ingress; None when it is due, or has been through the delay
    levels already (the producer's scheduled messages, a held message coming back): those
    are never held twice, whatever the clocks of two hosts say."""
    if not headers or DELIVER_AT not in headers:
        return None
    if _been_delayed(headers.get("x-death")):
        return None
    raw = headers[DELIVER_AT]
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        due: datetime | None = datetime.fromtimestamp(raw, UTC) if math.isfinite(raw) else None
    else:
        due = parse_time(raw)
    if due is None:
        return None  # unreadable: handled now rather than held on a guess
    remaining = (due - (now or datetime.now(UTC))).total_seconds()
    return min(remaining, MAX_DELAY_S) if remaining > 0 else None


def _been_delayed(deaths: Any) -> bool:
    """The broker's `x-death` names the delay level queues a message expired from."""
    if not isinstance(deaths, list | tuple):
        return False
    for death in deaths:
        queue = death.get("queue") if isinstance(death, Mapping) else None
        if isinstance(queue, bytes):
            queue = queue.decode("utf-8", "replace")
        if isinstance(queue, str) and _LEVEL_QUEUE.search(queue):
            return True
    return False
