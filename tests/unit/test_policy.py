"""consumer.policy: decide (outcome x attempt x policy -> Ack, Retry(delay) or Quarantine),
and the retry schedules (explicit delays, exponential backoff with jitter)."""

from __future__ import annotations

import random

import pytest

from common.delays import MAX_DELAY_S
from consumer.errors import RetryableError
from consumer.policy import (
    Ack,
    Backoff,
    Decision,
    Delays,
    Outcome,
    OutcomeKind,
    Quarantine,
    Retry,
    RetryPolicy,
    decide,
    retry_schedule,
)

DELAYS = (1.0, 5.0, 30.0)
POLICY = RetryPolicy(max_attempts=6, schedule=Delays(DELAYS))
BOOM = Outcome(OutcomeKind.RETRYABLE, "ConnectionError", "db down", "Traceback ...")
SLOW = Outcome(OutcomeKind.TIMEOUT, "HandlerTimeout", "did not finish within 30 s")

NEVER_RETRIED = [
    OutcomeKind.PERMANENT,
    OutcomeKind.UNDECODABLE,
    OutcomeKind.UNKNOWN_TYPE,
    OutcomeKind.INVALID_PAYLOAD,
]


@pytest.mark.parametrize("attempt", [1, 2, 6, 99])
def test_success_is_acked_at_any_attempt(attempt: int) -> None:
    assert decide(Outcome.success(), attempt, POLICY) == Ack()


@pytest.mark.parametrize("outcome", [BOOM, SLOW], ids=["retryable", "timeout"])
@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, Retry(delay_s=1.0, next_attempt=2)),
        (2, Retry(delay_s=5.0, next_attempt=3)),
        (3, Retry(delay_s=30.0, next_attempt=4)),
        # past the last delay, the last one repeats
        (4, Retry(delay_s=30.0, next_attempt=5)),
        (5, Retry(delay_s=30.0, next_attempt=6)),
    ],
)
def test_transient_failures_with_attempts_left_wait_the_delay_for_the_attempt(
    outcome: Outcome, attempt: int, expected: Decision
) -> None:
    assert decide(outcome, attempt, POLICY) == expected


@pytest.mark.parametrize("outcome", [BOOM, SLOW], ids=["retryable", "timeout"])
@pytest.mark.parametrize("attempt", [6, 7, 50])
def test_transient_failures_without_attempts_left_are_quarantined(
    outcome: Outcome, attempt: int
) -> None:
    decision = decide(outcome, attempt, POLICY)

    assert isinstance(decision, Quarantine)
    assert decision.reason.startswith(f"gave up after {attempt} attempts: ")
    assert outcome.error_type in decision.reason
    assert outcome.error_message in decision.reason


def test_a_single_attempt_policy_quarantines_at_once_in_the_singular() -> None:
    decision = decide(BOOM, 1, RetryPolicy(max_attempts=1, schedule=Delays(DELAYS)))

    assert decision == Quarantine("gave up after 1 attempt: ConnectionError: db down")


@pytest.mark.parametrize("kind", NEVER_RETRIED, ids=lambda kind: kind.value)
@pytest.mark.parametrize("attempt", [1, 2, 6])
def test_failures_no_retry_can_fix_are_quarantined_at_once(kind: OutcomeKind, attempt: int) -> None:
    outcome = Outcome(kind, "SomeError", "details for a person")

    decision = decide(outcome, attempt, POLICY)

    assert decision == Quarantine(f"{kind.value}: SomeError: details for a person")


def test_every_outcome_kind_has_a_decision() -> None:
    for kind in OutcomeKind:
        decision = decide(Outcome(kind, "E", "m"), 1, POLICY)
        assert isinstance(decision, Ack | Retry | Quarantine)


@pytest.mark.parametrize(
    ("delays", "attempt", "delay_s"),
    [
        ((2.0,), 1, 2.0),
        ((2.0,), 4, 2.0),
        ((1.0, 5.0, 30.0, 120.0, 600.0), 1, 1.0),
        ((1.0, 5.0, 30.0, 120.0, 600.0), 5, 600.0),
        ((1.0, 5.0, 30.0, 120.0, 600.0), 9, 600.0),
    ],
)
def test_delay_after_walks_the_delays_and_repeats_the_last(
    delays: tuple[float, ...], attempt: int, delay_s: float
) -> None:
    assert RetryPolicy(max_attempts=10, schedule=Delays(delays)).delay_after(attempt) == delay_s


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12, 40, 5000])
def test_backoff_with_jitter_stays_within_its_bounds(attempt: int) -> None:
    backoff = Backoff(first=1, factor=2, max=600, jitter=0.2)
    base = min(600.0, 2.0 ** (attempt - 1)) if attempt < 100 else 600.0
    rng = random.Random(attempt)

    delays = [backoff.delay_after(attempt, rng.random) for _ in range(500)]

    assert all(base * 0.8 <= delay <= min(600.0, base * 1.2) for delay in delays)
    assert len(set(delays)) > 200  # spread, not one value: messages failing together part


def test_backoff_reaches_the_ends_of_its_jitter() -> None:
    backoff = Backoff(first=10, factor=3, max=1000, jitter=0.5)

    assert backoff.delay_after(2, lambda: 0.0) == 15.0  # 30 s - 50 %
    assert backoff.delay_after(2, lambda: 1.0) == 45.0  # 30 s + 50 %
    assert backoff.delay_after(9, lambda: 1.0) == 1000.0  # the cap holds above the jitter


def test_backoff_without_jitter_is_exactly_exponential() -> None:
    backoff = Backoff(first=1, factor=2, max=600, jitter=0)

    assert [backoff.delay_after(attempt) for attempt in range(1, 12)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        600,
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": -1}, "first <= max"),
        ({"first": 10, "max": 5}, "first <= max"),
        ({"max": MAX_DELAY_S + 1}, "first <= max"),
        ({"factor": 0.5}, "factor must be at least 1"),
        ({"jitter": 1.5}, "jitter is a fraction"),
    ],
)
def test_a_backoff_that_cannot_work_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_a_list_of_delays_becomes_a_schedule_and_bad_delays_are_refused() -> None:
    assert retry_schedule([1, 2.5]) == Delays((1.0, 2.5))
    assert retry_schedule(Backoff()) == Backoff()
    with pytest.raises(ValueError, match="at least one delay"):
        retry_schedule([])
    with pytest.raises(ValueError, match="not from 0"):
        retry_schedule([1, -2])


def test_a_retryable_error_with_a_delay_overrides_the_schedule() -> None:
    asked = Outcome(OutcomeKind.RETRYABLE, "RateLimited", "429", retry_delay_s=42.0)

    assert decide(asked, 1, POLICY) == Retry(delay_s=42.0, next_attempt=2)
    assert decide(asked, 6, POLICY) == Quarantine("gave up after 6 attempts: RateLimited: 429")


def test_a_delay_beyond_the_longest_is_capped_at_the_longest() -> None:
    asked = Outcome(OutcomeKind.RETRYABLE, "E", "m", retry_delay_s=1e12)

    assert decide(asked, 1, POLICY) == Retry(delay_s=MAX_DELAY_S, next_attempt=2)


def test_retryable_error_refuses_a_negative_delay() -> None:
    assert RetryableError("x", delay=3).delay == 3
    assert RetryableError("x").delay is None
    with pytest.raises(ValueError, match=">= 0"):
        RetryableError("x", delay=-1)


def test_outcome_ok_only_for_success() -> None:
    assert Outcome.success().ok
    assert not any(Outcome(kind).ok for kind in OutcomeKind if kind is not OutcomeKind.SUCCESS)
