"""What happens to a delivery, decided purely from its outcome, attempt and handler policy.

success                                   -> Ack
retryable / unknown error / timeout,
    attempts left                         -> Retry in the tier for this attempt
permanent, undecodable, unknown type,
invalid payload, or attempts exhausted    -> Quarantine with the reason
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "Ack",
    "Decision",
    "Outcome",
    "OutcomeKind",
    "Quarantine",
    "Retry",
    "RetryPolicy",
    "decide",
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
    result: Any = None  # what a successful handler returned (lifecycle events carry it)

    @classmethod
    def success(cls, result: Any = None) -> Outcome:
        return _SUCCESS if result is None else cls(OutcomeKind.SUCCESS, result=result)

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS


_SUCCESS = Outcome(OutcomeKind.SUCCESS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    retry_delays_s: tuple[float, ...]

    def delay_after(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1`: the n-th tier, the last one repeating."""
        return self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1]


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
            return Retry(policy.delay_after(attempt), attempt + 1)
        return Quarantine(
            f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: "
            f"{outcome.error_type}: {outcome.error_message}"
        )
    return Quarantine(f"{outcome.kind.value}: {outcome.error_type}: {outcome.error_message}")
