"""The outage breaker's state machine, step by step with a fake clock."""

from __future__ import annotations

import pytest

from consumer.breaker import BreakerPolicy, BreakerState, CircuitBreaker

POLICY = BreakerPolicy(failure_ratio=0.5, window_s=10, min_outcomes=4, cooldown_s=5, probes=2)
OPEN, HALF, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


def test_it_opens_when_the_failure_ratio_is_reached_over_enough_outcomes() -> None:
    breaker = CircuitBreaker(POLICY)
    assert [breaker.record(failed, now=1) for failed in (True, True, True)] == [None] * 3
    assert breaker.record(False, now=1) is OPEN  # 3 of 4 failed
    assert breaker.state is OPEN


def test_it_stays_closed_below_the_ratio() -> None:
    breaker = CircuitBreaker(POLICY)
    results = [breaker.record(failed, now=1) for failed in (True, False, False, False, False)]
    assert results == [None] * 5
    assert breaker.state is CLOSED


def test_old_outcomes_leave_the_window() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.record(True, now=0)
    # 11 s later the old failures no longer count: 1 failure of 4
    assert [breaker.record(failed, now=11) for failed in (True, False, False, False)] == [None] * 4


def test_cooldown_then_probes_close_it() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(4):
        breaker.record(True, now=0)
    assert breaker.state is OPEN
    assert breaker.record(True, now=1) is None  # stragglers while open change nothing
    assert breaker.poll(now=4) is None
    assert breaker.poll(now=5) is HALF
    assert breaker.record(False, now=5.1) is None
    assert breaker.record(False, now=5.2) is CLOSED


def test_a_failed_probe_opens_it_again_for_a_new_cooldown() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(4):
        breaker.record(True, now=0)
    breaker.poll(now=5)
    assert breaker.record(True, now=6) is OPEN
    assert breaker.poll(now=10) is None
    assert breaker.poll(now=11) is HALF


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_ratio": 0}, {"failure_ratio": 1.5}, {"window_s": 0}, {"probes": 0}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]
