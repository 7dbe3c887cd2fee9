"""consumer.limits: starts spaced by a rate (pure, time passed in), places bounded with a
bounded queue of waiters, and the registry options that set them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from common.errors import ConfigurationError
from consumer import Registry
from consumer.limits import HandlerLimit, TokenBucket


@pytest.mark.parametrize(
    ("asks_at", "max_wait_s", "expected"),
    [
        # rate 2/s: starts 0.5 s apart, reserved in the order asked
        ([0.0], 1.0, [0.0]),
        ([0.0, 0.0, 0.0], 1.0, [0.0, 0.5, 1.0]),
        ([0.0, 0.0, 0.0, 0.0], 1.0, [0.0, 0.5, 1.0, None]),  # 1.5 s away: not reserved
        ([0.0, 0.0, 0.0, 0.0, 0.5], 1.0, [0.0, 0.5, 1.0, None, 1.0]),  # the refusal took nothing
        ([0.0, 3.0], 1.0, [0.0, 0.0]),  # an idle bucket does not save up a burst
        ([0.0, 0.0], 0.0, [0.0, None]),
    ],
)
def test_a_bucket_reserves_starts_one_interval_apart(
    asks_at: list[float], max_wait_s: float, expected: list[float | None]
) -> None:
    bucket = TokenBucket(rate=2.0)
    waits = [bucket.reserve(now, max_wait_s) for now in asks_at]
    assert waits == expected  # binary fractions: exact


async def test_a_limit_runs_up_to_its_concurrency_queues_as_many_and_defers_the_rest() -> None:
    limit = HandlerLimit(concurrency=2, rate=None)
    assert await limit.enter()
    assert await limit.enter()
    waiters = [asyncio.create_task(limit.enter()) for _ in range(2)]
    await asyncio.sleep(0)

    assert not await limit.enter()  # two run, two wait: the fifth is deferred

    limit.leave()
    assert await waiters[0]
    assert not waiters[1].done()
    limit.leave()
    assert await waiters[1]


async def test_an_unbounded_enter_waits_even_when_the_queue_of_waiters_is_full() -> None:
    limit = HandlerLimit(concurrency=1, rate=None)
    assert await limit.enter()
    waiting = asyncio.create_task(limit.enter())
    await asyncio.sleep(0)
    unbounded = asyncio.create_task(limit.enter(bounded=False))
    await asyncio.sleep(0)

    limit.leave()
    assert await waiting
    assert not unbounded.done()
    limit.leave()
    assert await unbounded


async def test_a_delivery_refused_by_the_rate_gives_its_place_back() -> None:
    limit = HandlerLimit(concurrency=3, rate=0.5)  # starts 2 s apart; waits up to 2 s
    assert await limit.enter()
    second = asyncio.create_task(limit.enter())  # reserved 2 s from now: waits, holding a place
    await asyncio.sleep(0)

    assert not await limit.enter()  # 4 s away: deferred, and its place is free again
    assert limit.taken == 2

    second.cancel()  # a delivery cancelled while it waits for its start gives its place back
    with pytest.raises(asyncio.CancelledError):
        await second
    assert limit.taken == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"rate": 0}, "rate must be positive"),
        ({"rate": -1.5}, "rate must be positive"),
    ],
)
def test_limits_that_cannot_work_are_refused_at_registration(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Registry("orders").handler("orders.created", **options)


def test_a_handlers_limits_are_on_its_spec() -> None:
    registry = Registry("orders")

    @registry.handler("orders.created", concurrency=3, rate=10)
    async def created(payload: Any) -> None: ...

    spec = registry.find("orders.created")
    assert spec is not None
    assert (spec.concurrency, spec.rate) == (3, 10)


async def test_a_delivery_refused_by_the_rate_stays_away_until_a_start_is_free() -> None:
    limit = HandlerLimit(concurrency=None, rate=0.5)  # starts 2 s apart; waits up to 2 s
    assert await limit.enter()
    waiting = asyncio.create_task(limit.enter())  # the start 2 s from now is its
    await asyncio.sleep(0)

    assert not await limit.enter()
    assert 3.9 < limit.deferral_s() <= 4.0  # the first start nobody reserved: 4 s from then
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


async def test_a_delivery_refused_by_concurrency_alone_goes_back_at_once() -> None:
    limit = HandlerLimit(concurrency=1, rate=None)
    assert await limit.enter()
    waiting = asyncio.create_task(limit.enter())
    await asyncio.sleep(0)

    assert not await limit.enter()
    assert limit.deferral_s() == 0.0
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
