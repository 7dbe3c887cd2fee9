"""Per-handler limits (`concurrency=`, `rate=`) that never stall the service's other types.

Every type of a service shares one prefetch window per priority queue. If a delivery whose
handler is at its limit simply waited, a burst of that type would fill the window and the
other types would wait behind it (head-of-line blocking). So a delivery over its limit
waits only while the wait is short and bounded, and holds no handler slot meanwhile:

    concurrency: a free place -> run; else at most `concurrency` deliveries wait for a
                 place (FIFO), and any further one is deferred at once
    rate:        a start reserved within max(1 s, 1/rate) -> sleep until then and run;
                 else deferred (nothing reserved)

Deferred means a confirmed copy with its attempt unchanged, then an ack: under a rate, into
the delay levels until the rate has a start nobody reserved (the way a retry waits); under a
concurrency limit, whose places free up at any moment, straight to the tail of its queue
through the requeue exchange (`x-hopline-queue` = its own queue). Either way it comes back
to the same queue. It is never nacked with requeue: quorum queues would count that towards
the delivery limit and quarantine a healthy message. So a limited type holds at most twice
its concurrency of the window; the price is that while a concurrency limit is saturated,
its excess circulates through the queue (one confirmed publish and one ack per pass;
bench/README.md measures it). Limits count per consumer process.

`TokenBucket` is pure (time passed in); `HandlerLimit` adds the waiting.
"""

from __future__ import annotations

import asyncio

from common.envelope import IncomingLike, message_type_of
from common.errors import UndecodableMessageError
from consumer.registry import HandlerSpec, Registry
from consumer.scheduler import PrioritySlots

__all__ = ["HandlerLimit", "HandlerLimits", "TokenBucket"]

# The longest a delivery waits for its start under `rate` (or one interval, if longer).
_RATE_WAIT_S = 1.0


class TokenBucket:
    """Starts spaced `1 / rate` seconds apart (no burst), reserved in order of asking."""

    def __init__(self, rate: float) -> None:
        self._interval_s = 1.0 / rate
        self._next_s = float("-inf")  # the earliest time the next start may happen

    def reserve(self, now: float, max_wait_s: float) -> float | None:
        """Seconds until the reserved start (0: now); None, reserving nothing, if later
        than `max_wait_s` from `now`."""
        start = max(now, self._next_s)
        if start - now > max_wait_s:
            return None
        self._next_s = start + self._interval_s
        return start - now

    def free_in_s(self, now: float) -> float:
        """Seconds until the first start nobody reserved yet."""
        return max(0.0, self._next_s - now)

    @property
    def interval_s(self) -> float:
        return self._interval_s


class HandlerLimit:
    """The limits of one handler: pair a successful `enter()` with `leave()`."""

    def __init__(self, concurrency: int | None, rate: float | None) -> None:
        self._places = PrioritySlots(concurrency) if concurrency is not None else None
        self._bucket = TokenBucket(rate) if rate is not None else None

    async def enter(self, *, bounded: bool = True) -> bool:
        """True once this delivery may run; False when it must be deferred. Unbounded, it
        waits as long as it takes (for a delivery whose deferral the broker refused)."""
        places = self._places
        if places is not None:
            full = places.busy >= places.limit and len(places) >= places.limit
            if full and bounded:
                return False
            await places.acquire(0)
        try:
            started = await self._start_in_time(bounded)
        except BaseException:  # cancelled while waiting for its start: give the place back
            self.leave()
            raise
        if not started:
            self.leave()
        return started

    async def _start_in_time(self, bounded: bool) -> bool:
        if self._bucket is None:
            return True
        max_wait_s = max(_RATE_WAIT_S, self._bucket.interval_s) if bounded else float("inf")
        wait_s = self._bucket.reserve(asyncio.get_running_loop().time(), max_wait_s)
        if wait_s is None:
            return False
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return True

    def leave(self) -> None:
        if self._places is not None:
            self._places.release()

    def deferral_s(self) -> float:
        """How long a delivery this limit refused should stay away: until the rate has a
        start nobody reserved (0 under a concurrency limit alone: its places free up at
        any moment)."""
        if self._bucket is None:
            return 0.0
        return self._bucket.free_in_s(asyncio.get_running_loop().time())

    @property
    def taken(self) -> int:
        """Places held: running, or waiting for their start under the rate."""
        return self._places.busy if self._places is not None else 0


class HandlerLimits:
    """The limits of a registry's handlers, found for a delivery before it is decoded."""

    def __init__(self, registry: Registry, priorities: tuple[str, ...]) -> None:
        self._registry = registry
        self._priorities = priorities
        self._by_pattern = {
            spec.type_pattern: HandlerLimit(spec.concurrency, spec.rate)
            for spec in registry.specs
            if _limited(spec)
        }

    def __bool__(self) -> bool:
        return bool(self._by_pattern)

    def for_delivery(self, incoming: IncomingLike) -> HandlerLimit | None:
        """The limit of the handler this delivery goes to, if it has one (an undecodable
        delivery has none: it is quarantined without running anything)."""
        try:
            message_type = message_type_of(incoming, self._priorities)
        except UndecodableMessageError:
            return None
        spec = self._registry.find(message_type)
        return self._by_pattern.get(spec.type_pattern) if spec is not None else None


def _limited(spec: HandlerSpec) -> bool:
    return spec.concurrency is not None or spec.rate is not None
