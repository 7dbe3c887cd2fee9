"""common.teardown: a future that aiormq cancels while tearing down a dead connection is a
lost connection; a cancel of the task itself stays a cancel."""

from __future__ import annotations

import asyncio

import pytest

from common.errors import BrokerUnavailableError
from common.teardown import connection_torn_down_as


async def _await_under_teardown_guard(future: asyncio.Future[None]) -> None:
    with connection_torn_down_as(BrokerUnavailableError, "lost the broker"):
        await future


async def test_a_future_cancelled_by_a_teardown_is_a_lost_connection() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(_await_under_teardown_guard(future))
    await asyncio.sleep(0)
    future.cancel()  # what aiormq does to a pending confirm of a dead connection

    with pytest.raises(BrokerUnavailableError, match="lost the broker"):
        await waiting
    assert not waiting.cancelled()


async def test_a_task_that_is_cancelled_stays_cancelled() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(_await_under_teardown_guard(future))
    await asyncio.sleep(0)
    waiting.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


async def test_a_deadline_inside_the_guard_is_still_a_timeout() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    with pytest.raises(TimeoutError), connection_torn_down_as():
        async with asyncio.timeout(0.01):
            await future
