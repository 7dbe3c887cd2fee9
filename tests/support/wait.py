"""Waiting with deadlines instead of bare sleeps.

Brokers are eventually consistent from a test's point of view (a consumer acks a moment
later, management statistics refresh every few seconds), so tests poll a condition until a
deadline and fail with a message that says what never became true.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["wait_until", "wait_until_sync"]

T = TypeVar("T")


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T]],
    timeout_s: float,
    interval_s: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    interval_s: float = ...,
    message: str = ...,
) -> T: ...


async def wait_until(
    predicate: Callable[[], Any],
    timeout_s: float,
    interval_s: float = 0.05,
    message: str = "",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return that.

    Raises AssertionError with `message` and the last value seen when `timeout_s` passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_text(message, timeout_s, value))
        await asyncio.sleep(interval_s)


def wait_until_sync(
    predicate: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.05,
    message: str = "",
) -> T:
    """Blocking twin of `wait_until`, for sync tests and fixtures."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_text(message, timeout_s, value))
        time.sleep(interval_s)


def _timeout_text(message: str, timeout_s: float, last: object) -> str:
    what = message or "condition"
    return f"{what}: not true within {timeout_s:g}s (last value: {last!r})"
