"""consumer.policy.decide: outcome x attempt x policy -> Ack, Retry(tier) or Quarantine."""

from __future__ import annotations

import pytest

from consumer.policy import (
    Ack,
    Decision,
    Outcome,
    OutcomeKind,
    Quarantine,
    Retry,
    RetryPolicy,
    decide,
)

DELAYS = (1.0, 5.0, 30.0)
POLICY = RetryPolicy(max_attempts=6, retry_delays_s=DELAYS)
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
        # past the last tier, the last one repeats
        (4, Retry(delay_s=30.0, next_attempt=5)),
        (5, Retry(delay_s=30.0, next_attempt=6)),
    ],
)
def test_transient_failures_with_attempts_left_go_to_the_tier_for_the_attempt(
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
    decision = decide(BOOM, 1, RetryPolicy(max_attempts=1, retry_delays_s=DELAYS))

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
def test_delay_after_walks_the_tiers_and_repeats_the_last(
    delays: tuple[float, ...], attempt: int, delay_s: float
) -> None:
    assert RetryPolicy(max_attempts=10, retry_delays_s=delays).delay_after(attempt) == delay_s


def test_outcome_ok_only_for_success() -> None:
    assert Outcome.success().ok
    assert not any(Outcome(kind).ok for kind in OutcomeKind if kind is not OutcomeKind.SUCCESS)
