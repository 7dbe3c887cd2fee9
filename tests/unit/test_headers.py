"""common.headers: the attempt counter survives foreign publishers; added text stays bounded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from common import headers as h
from common.headers import (
    ATTEMPT,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    RESERVED_PREFIX,
    bounded,
    bounded_tail,
    read_attempt,
)


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [
        (None, 1),
        ({}, 1),
        ({"other": 5}, 1),
        ({ATTEMPT: 3}, 3),
        ({ATTEMPT: 1}, 1),
        ({ATTEMPT: "3"}, 3),
        ({ATTEMPT: " 4 "}, 4),
        ({ATTEMPT: b"3"}, 3),
        ({ATTEMPT: b"\xff"}, 1),
        ({ATTEMPT: 3.0}, 3),
        ({ATTEMPT: 2.9}, 2),
        ({ATTEMPT: Decimal(6)}, 6),
        ({ATTEMPT: None}, 1),
        ({ATTEMPT: ""}, 1),
        ({ATTEMPT: "3.5"}, 1),
        ({ATTEMPT: "three"}, 1),
        ({ATTEMPT: [3]}, 1),
        ({ATTEMPT: {"n": 3}}, 1),
        ({ATTEMPT: float("nan")}, 1),
        ({ATTEMPT: 0}, 1),
        ({ATTEMPT: -7}, 1),
        ({ATTEMPT: "-2"}, 1),
        ({ATTEMPT: 10**6}, 10**6),
    ],
)
def test_read_attempt_is_one_based_and_forgiving(headers: Any, attempt: int) -> None:
    assert read_attempt(headers) == attempt


@pytest.mark.parametrize("raw", [float("inf"), float("-inf"), Decimal("Infinity")])
def test_read_attempt_treats_an_infinite_attempt_as_unreadable(raw: Any) -> None:
    assert read_attempt({ATTEMPT: raw}) == 1


def test_every_header_name_is_reserved_and_distinct() -> None:
    header_names = [
        h.ATTEMPT,
        h.ORIGIN_QUEUE,
        h.ROUTING_KEY,
        h.ERROR_TYPE,
        h.ERROR_MESSAGE,
        h.ERROR_TRACEBACK,
        h.FAILED_AT,
        h.CONSUMER,
        h.REASON,
    ]

    assert all(name.startswith(RESERVED_PREFIX) for name in header_names)
    assert len(set(header_names)) == len(header_names)


SIZES = [0, 1, 15, 16, 99, 100, 101, 1_000, 10_000]
LIMITS = [20, 50, 100, MAX_ERROR_MESSAGE_CHARS, MAX_TRACEBACK_CHARS]


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("bound", [bounded, bounded_tail])
def test_bounded_text_never_exceeds_its_limit(bound: Any, size: int, limit: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(size))

    result = bound(text, limit)

    assert len(result) <= limit
    if size <= limit:
        assert result == text
    else:
        assert "truncated" in result


def test_bounded_keeps_the_head() -> None:
    text = "first words matter " + "x" * 5_000

    result = bounded(text, 100)

    assert result.startswith("first words matter")
    assert result.endswith("…[truncated]")


def test_bounded_tail_keeps_the_tail() -> None:
    text = "x" * 5_000 + " innermost frame"

    result = bounded_tail(text, 100)

    assert result.endswith("innermost frame")
    assert result.startswith("[truncated]…")


@pytest.mark.parametrize("limit", [0, 5, 12, 13])
@pytest.mark.parametrize("bound", [bounded, bounded_tail])
def test_bounded_text_never_exceeds_a_tiny_limit(bound: Any, limit: int) -> None:
    assert len(bound("x" * 100, limit)) <= limit
