"""The monotone state machine: which event wins, whatever order they arrive in."""

from __future__ import annotations

import pytest

from common.events import Event, bounded_result
from common.status.states import is_service_event, rank, state_of
from tests.support.events import event


def _latest(events: list[Event]) -> Event:
    service_events = [e for e in events if is_service_event(e)]
    return max(service_events, key=rank)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        (event("started", second=0), event("succeeded", second=1)),
        (event("started", second=0), event("retry_scheduled", second=1, delay_s=1)),
        (event("retry_scheduled", second=1, delay_s=1), event("started", second=2, attempt=2)),
        (event("started", attempt=3, second=5), event("quarantined", attempt=3, second=6)),
        (event("quarantined", attempt=3, second=6), event("discarded", attempt=3, second=7)),
        (
            event("quarantined", attempt=3, second=6),
            event("replayed", second=9, replay=1, attempt=0),
        ),
        (event("replayed", second=9, replay=1, attempt=0), event("started", second=10, replay=1)),
        # a redelivery of a succeeded attempt (lost ack) runs again but stays succeeded
        (event("started", second=3), event("succeeded", second=2)),
    ],
)
def test_the_more_advanced_event_wins_in_either_order(earlier: Event, later: Event) -> None:
    assert _latest([earlier, later]) == later
    assert _latest([later, earlier]) == later


def test_an_old_started_never_overwrites_a_newer_succeeded_even_with_a_skewed_clock() -> None:
    succeeded = event("succeeded", attempt=2, second=1)
    stale_started = event("started", attempt=1, second=50)  # another host's clock runs ahead

    assert state_of(_latest([succeeded, stale_started])) == "succeeded"


def test_a_duplicate_has_the_same_rank() -> None:
    assert rank(event("started")) == rank(event("started"))


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("started", "processing"),
        ("retry_scheduled", "retrying"),
        ("succeeded", "succeeded"),
        ("quarantined", "quarantined"),
        ("discarded", "discarded"),
        ("replayed", "accepted"),
        ("copied", "accepted"),
        ("unroutable", "unroutable"),
    ],
)
def test_states_people_read(name: str, state: str) -> None:
    assert state_of(event(name)) == state


def test_accepted_is_about_the_message_not_a_service() -> None:
    assert not is_service_event(event("accepted"))
    assert is_service_event(event("started"))


def test_unroutable_is_a_state_so_a_lookup_shows_where_the_message_is_kept() -> None:
    assert is_service_event(event("unroutable", service="producer"))


def test_an_event_survives_its_json_form() -> None:
    original = event("retry_scheduled", delay_s=5.0, error_type="Boom", error_message="x")

    assert Event.from_json(original.to_json()) == original


@pytest.mark.parametrize(
    ("value", "kept"),
    [({"ok": 1}, {"ok": 1}), (None, None), ("x" * 10, "x" * 10)],
)
def test_results_within_the_limit_are_kept(value: object, kept: object) -> None:
    assert bounded_result(value, 100) == kept


def test_results_over_the_limit_or_not_json_become_a_note() -> None:
    assert "over the limit of 10" in bounded_result("x" * 100, 10)
    assert "not JSON-serialisable" in bounded_result(object(), 100)
