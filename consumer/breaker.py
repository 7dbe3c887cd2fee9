"""Outage protection: stop consuming while a dependency fails for every message (pure policy).

When a handler's database is down, every message fails, and retries alone would march the
whole queue through its retries into quarantine. The breaker watches the failure ratio
of recent outcomes; past a threshold it opens (the worker cancels its consumers, so messages
stay ready in RabbitMQ), waits a cool-down, then half-opens (consumes again with a prefetch
of `probes`). If those probes succeed it closes (normal consuming); one failure opens it
again for another cool-down.

    CLOSED --failure ratio >= threshold over the window--> OPEN
    OPEN --cool-down elapsed--> HALF_OPEN
    HALF_OPEN --`probes` successes--> CLOSED
    HALF_OPEN --a failure--> OPEN

Only transient failures (retryable errors, timeouts) count: a malformed or permanently
failing message says nothing about the dependency. Time is passed in, so this is pure.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    CLOSED = "closed"  # consuming
    OPEN = "open"  # paused: consumers cancelled, messages wait in RabbitMQ
    HALF_OPEN = "half_open"  # probing with a few messages


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_ratio: float = 0.5  # open when failures / outcomes in the window reach this
    window_s: float = 30.0
    min_outcomes: int = 20  # never judge on fewer outcomes than this
    cooldown_s: float = 30.0
    probes: int = 5  # successes in a row that close it again

    def __post_init__(self) -> None:
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.window_s <= 0 or self.cooldown_s <= 0:
            raise ValueError("window_s and cooldown_s must be positive")
        if self.min_outcomes < 1 or self.probes < 1:
            raise ValueError("min_outcomes and probes must be at least 1")


@dataclass(slots=True)
class CircuitBreaker:
    policy: BreakerPolicy
    state: BreakerState = BreakerState.CLOSED
    opened_at: float = 0.0
    _outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    _probe_successes: int = 0

    def record(self, failed: bool, now: float) -> BreakerState | None:
        """One transient failure (`failed`) or success; the new state if it changed."""
        if self.state is BreakerState.OPEN:
            return None  # stragglers already running when it opened
        if self.state is BreakerState.HALF_OPEN:
            if failed:
                return self._open(now)
            self._probe_successes += 1
            if self._probe_successes >= self.policy.probes:
                self.state = BreakerState.CLOSED
                self._outcomes.clear()
                return self.state
            return None
        self._outcomes.append((now, failed))
        self._forget_before(now - self.policy.window_s)
        total = len(self._outcomes)
        failures = sum(1 for _, bad in self._outcomes if bad)
        if total >= self.policy.min_outcomes and failures >= self.policy.failure_ratio * total:
            return self._open(now)
        return None

    def poll(self, now: float) -> BreakerState | None:
        """HALF_OPEN once the cool-down has passed (the new state), else None."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.policy.cooldown_s:
            self.state = BreakerState.HALF_OPEN
            self._probe_successes = 0
            return self.state
        return None

    def _open(self, now: float) -> BreakerState:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self._outcomes.clear()
        return self.state

    def _forget_before(self, cutoff: float) -> None:
        while self._outcomes and self._outcomes[0][0] < cutoff:
            self._outcomes.popleft()
