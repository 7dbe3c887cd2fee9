"""What happens to a delivery, decided purely from its outcome, attempt and handler policy.

success                                   -> Ack
retryable / unknown error / timeout,
    attempts left                         -> Retry after the handler's backoff (or the delay
                                             a RetryableError asked for)
permanent, undecodable, unknown type,
invalid payload, or attempts exhausted    -> Quarantine with the reason
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common.delays import MAX_DELAY_S

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "Ack",
    "Backoff",
    "Decision",
    "Delays",
    "Outcome",
    "OutcomeKind",
    "Quarantine",
    "Retry",
    "RetryPolicy",
    "RetrySchedule",
    "decide",
    "retry_schedule",
]


# A handler's attempts unless it says otherwise; also the policy for messages no handler
# takes (undecodable, unknown type), which are quarantined at once anyway.
DEFAULT_MAX_ATTEMPTS = 5


class OutcomeKind(enum.Enum):
    SUCCESS = "success"
    RETRYABLE = "retryable"  # RetryableError or any unexpected exception
    TIMEOUT = "timeout"
    PERMANENT = "permanent"
    INVALID_PAYLOAD = "invalid_payload"  # the handler's model rejected the payload
    UNDECODABLE = "undecodable"
    UNKNOWN_TYPE = "unknown_type"


_TRANSIENT = frozenset({OutcomeKind.RETRYABLE, OutcomeKind.TIMEOUT})


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    retry_delay_s: float | None = None  # what a RetryableError(delay=...) asked for
    result: Any = None  # what a successful handler returned (lifecycle events carry it)

    @classmethod
    def success(cls, result: Any = None) -> Outcome:
        return _SUCCESS if result is None else cls(OutcomeKind.SUCCESS, result=result)

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS


_SUCCESS = Outcome(OutcomeKind.SUCCESS)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `first * factor^(attempt-1)` seconds, capped at `max`, spread by
    ±`jitter` (a fraction) so that messages failing together do not all return together.

    >>> Backoff(first=1, factor=2, max=600, jitter=0.2)  # ~1 s, ~2 s, ~4 s, ... 600 s
    """

    first: float = 1.0
    factor: float = 2.0
    max: float = 600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.max <= MAX_DELAY_S:
            raise ValueError(
                f"Backoff needs 0 <= first <= max <= {MAX_DELAY_S} s, got first={self.first}, "
                f"max={self.max}"
            )
        if self.factor < 1:
            raise ValueError(f"Backoff factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff jitter is a fraction from 0 to 1, got {self.jitter}")

    def delay_after(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        try:
            base = min(self.max, self.first * self.factor ** (attempt - 1))
        except OverflowError:  # a huge attempt with a large factor: the cap it is
            base = self.max
        spread = base * self.jitter
        return min(self.max, base - spread + 2 * spread * uniform())


@dataclass(frozen=True, slots=True)
class Delays:
    """An explicit list of delays in seconds: the n-th for the n-th retry, the last repeating."""

    delays_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.delays_s:
            raise ValueError("a list of retry delays needs at least one delay")
        for delay_s in self.delays_s:
            if not (math.isfinite(delay_s) and 0 <= delay_s <= MAX_DELAY_S):
                raise ValueError(f"retry delay {delay_s} is not from 0 to {MAX_DELAY_S} s")

    def delay_after(self, attempt: int) -> float:
        return self.delays_s[min(attempt, len(self.delays_s)) - 1]


RetrySchedule = Backoff | Delays


def retry_schedule(retry: Backoff | Delays | Sequence[float]) -> RetrySchedule:
    """What a handler's `retry=` says, as a schedule: a list of delays becomes `Delays`."""
    if isinstance(retry, Backoff | Delays):
        return retry
    return Delays(tuple(float(delay_s) for delay_s in retry))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    schedule: RetrySchedule

    def delay_after(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1`."""
        return self.schedule.delay_after(attempt)


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    next_attempt: int


@dataclass(frozen=True, slots=True)
class Quarantine:
    reason: str


Decision = Ack | Retry | Quarantine
_ACK = Ack()


def decide(outcome: Outcome, attempt: int, policy: RetryPolicy) -> Decision:
    if outcome.kind is OutcomeKind.SUCCESS:
        return _ACK
    if outcome.kind in _TRANSIENT:
        if attempt < policy.max_attempts:
            delay_s = outcome.retry_delay_s
            if delay_s is None:
                delay_s = policy.delay_after(attempt)
            return Retry(min(delay_s, MAX_DELAY_S), attempt + 1)
        return Quarantine(
            f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: "
            f"{outcome.error_type}: {outcome.error_message}"
        )
    return Quarantine(f"{outcome.kind.value}: {outcome.error_type}: {outcome.error_message}")
