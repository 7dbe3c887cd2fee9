"""common.quarantine.selection: which failed messages an operator means, and their groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.quarantine.failed import FailedMessage
from common.quarantine.selection import (
    Selection,
    group_id,
    group_messages,
    message_summary,
    parse_duration,
    selection_from_filters,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def failed(
    id: str,
    *,
    error_type: str = "RuntimeError",
    message_type: str | None = "orders.created",
    error_message: str = "boom",
    minutes_ago: float | None = 5,
    replay_count: int = 0,
) -> FailedMessage:
    return FailedMessage(
        id=id,
        body=b"{}",
        routing_key="normal.orders.created",
        headers={},
        properties={},
        message_type=message_type,
        error_type=error_type,
        error_message=error_message,
        failed_at=None if minutes_ago is None else NOW - timedelta(minutes=minutes_ago),
        replay_count=replay_count,
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800)]
)
def test_durations_read_as_an_operator_writes_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_duration_that_is_not_one_says_which_forms_work() -> None:
    with pytest.raises(ValueError, match="since: duration 'soon' is not like 90s, 15m"):
        selection_from_filters(since="soon")


CASES = [
    (Selection(), {"a", "b", "c", "d"}),
    (Selection(ids=frozenset({"a", "c"})), {"a", "c"}),
    (Selection(message_type="reports.render"), {"c"}),
    (Selection(error="TIMEOUT"), {"b"}),  # case-insensitive, type or message
    (Selection(since=timedelta(minutes=10)), {"a", "b"}),  # d has no time: not "recent"
    (Selection(group=group_id("RuntimeError", "orders.created")), {"a", "d"}),
    (Selection(ids=frozenset({"a", "b"}), error="boom"), {"a"}),  # every filter must match
]


@pytest.mark.parametrize(("selection", "expected"), CASES)
def test_a_selection_matches_exactly_what_its_filters_say(
    selection: Selection, expected: set[str]
) -> None:
    messages = [
        failed("a"),
        failed("b", error_type="HandlerTimeout", error_message="took too long"),
        failed("c", message_type="reports.render", minutes_ago=60),
        failed("d", minutes_ago=None),
    ]
    assert {m.id for m in messages if selection.matches(m, now=NOW)} == expected


def test_groups_are_by_error_and_message_type_largest_first() -> None:
    groups = group_messages(
        [
            failed("a", minutes_ago=30),
            failed("b", minutes_ago=1, replay_count=2),
            failed("c", error_type="ValidationError"),
        ]
    )
    assert [(g.error_type, g.count) for g in groups] == [
        ("RuntimeError", 2),
        ("ValidationError", 1),
    ]
    first = groups[0]
    assert first.id == group_id("RuntimeError", "orders.created")
    assert (first.oldest, first.newest) == (NOW - timedelta(minutes=30), NOW - timedelta(minutes=1))
    assert first.failed_again == 1
    assert first.as_dict()["example_error"] == "boom"


def test_the_summary_is_the_same_for_the_cli_and_the_admin_api() -> None:
    summary = message_summary("hopline.orders.quarantine", failed("a"))
    assert summary["queue"] == "hopline.orders.quarantine"
    assert summary["error"] == "boom"
    assert summary["failed_at"] == NOW - timedelta(minutes=5)
