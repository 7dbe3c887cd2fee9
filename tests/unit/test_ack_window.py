"""AckWindow: a multiple ack never covers a delivery whose handler has not finished."""

from __future__ import annotations

import pytest

from consumer.acks import AckWindow


@pytest.mark.parametrize(
    ("marked", "settled", "expected"),
    [
        ([1, 2, 3], [], (3, [])),  # all finished in order: one multiple ack
        ([3, 1, 2], [], (3, [])),  # finished out of order: still one
        ([1, 3], [], (1, [3])),  # 2 still running: 1 by range, 3 alone
        ([2, 3], [], (None, [2, 3])),  # 1 still running: nothing by range
        ([1, 3], [2], (3, [])),  # 2 was rejected on its own: the range passes over it
        ([], [1], (None, [])),  # nothing marked: nothing sent
    ],
)
def test_take(
    marked: list[int], settled: list[int], expected: tuple[int | None, list[int]]
) -> None:
    window = AckWindow()
    for tag in settled:
        window.settle(tag)
    for tag in marked:
        window.mark(tag)
    assert window.take() == expected


def test_singles_acked_before_are_passed_over_later() -> None:
    # Given 2 and 3 were acked alone while 1 was still running
    window = AckWindow()
    window.mark(2)
    window.mark(3)
    assert window.take() == (None, [2, 3])
    # When 1 finishes, one multiple ack covers it and stops before the unsettled 5
    window.mark(1)
    window.mark(4)
    window.mark(6)
    assert window.take() == (4, [6])
    assert window.floor == 4
    # Then 5 alone, and the range moves past 6, acked singly before
    window.mark(5)
    window.mark(7)
    assert window.take() == (7, [])


def test_never_acks_a_tag_that_was_not_marked() -> None:
    window = AckWindow()
    for tag in (1, 2, 4, 5):
        window.mark(tag)
    upto, singles = window.take()
    acked = set(range(1, (upto or 0) + 1)) | set(singles)
    assert 3 not in acked and acked == {1, 2, 4, 5}


def test_a_stuck_delivery_turns_coalescing_off_to_bound_memory() -> None:
    window = AckWindow()
    for tag in range(2, 10_003):  # 1 never finishes
        window.mark(tag)
    upto, singles = window.take()
    assert upto is None and len(singles) == 10_001
    assert not window.coalescing
    window.mark(20_000)
    assert window.take() == (None, [20_000])
