"""Per-handler limits and middleware in the real worker, on a real broker.

Two types on one service share each priority queue's prefetch window: while the limited
type is saturated, the unlimited one keeps flowing, and the limited one never runs more
than its concurrency. Deferred deliveries come back without counting an attempt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from common.envelope import Envelope
from common.names import Names
from consumer import PermanentError, Registry
from consumer.pytest_plugin import ServiceFactory
from tests.support.pipeline import queue_depth
from tests.support.wait import wait_until

SLOW, FAST = 30, 40


class Saturated:
    """A slow type limited to 2 at once that waits for `release`, and a fast type."""

    def __init__(self) -> None:
        self.registry = Registry("mixed")
        self.release = asyncio.Event()
        self.running = 0
        self.most_at_once = 0
        self.slow_attempts: dict[str, int] = {}
        self.fast_done: set[str] = set()

        @self.registry.handler("reports.render", concurrency=2)
        async def slow(payload: Any, envelope: Envelope) -> None:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            try:
                await self.release.wait()
            finally:
                self.running -= 1
            self.slow_attempts[envelope.message_id] = envelope.attempt

        @self.registry.handler("orders.created")
        async def fast(payload: Any, envelope: Envelope) -> None:
            self.fast_done.add(envelope.message_id)


async def test_an_unlimited_type_keeps_flowing_while_a_limited_one_is_saturated(
    hopline_service: ServiceFactory, hopline_amqp_url: str
) -> None:
    # Given a window of 8 and a burst of the limited type in front of the unlimited one
    mixed = Saturated()
    service = await hopline_service(mixed.registry, concurrency=8, prefetch=8)
    slow_ids = [await service.send("reports.render", {"n": n}) for n in range(SLOW)]
    fast_ids = [await service.send("orders.created", {"n": n}) for n in range(FAST)]

    # Then every fast message is handled while the slow ones are held
    await wait_until(
        lambda: mixed.fast_done == set(fast_ids),
        timeout_s=30,
        message="the unlimited type was blocked behind the limited one",
    )
    assert mixed.running == 2
    assert not mixed.slow_attempts

    # When the slow handlers may finish
    mixed.release.set()

    # Then each slow message is handled once, on its first attempt, never more than 2 at once
    await wait_until(
        lambda: len(mixed.slow_attempts) == SLOW, timeout_s=30, message="slow ones not all done"
    )
    assert mixed.slow_attempts == dict.fromkeys(slow_ids, 1)
    assert mixed.most_at_once == 2
    assert await queue_depth(hopline_amqp_url, Names().quarantine("mixed")) == 0


async def test_a_rate_limit_spaces_the_starts_and_defers_without_counting_attempts(
    hopline_service: ServiceFactory,
) -> None:
    # Given 5 starts a second (a delivery waits at most 1 s for its start, so with a window
    # of 8 some are deferred) and 20 messages at once
    registry = Registry("paced")
    attempts: list[int] = []

    @registry.handler("mails.send", rate=5)
    async def send(payload: Any, envelope: Envelope) -> None:
        attempts.append(envelope.attempt)

    service = await hopline_service(registry, concurrency=8)
    loop = asyncio.get_running_loop()
    published_at = loop.time()
    ids = [await service.send("mails.send", {"n": n}) for n in range(20)]

    # Then all are handled, on their first attempt, and 20 starts took at least 19 intervals
    for message_id in ids:
        [result] = await service.results(message_id, count=1, timeout_s=30)
        assert result.acked
    assert attempts == [1] * 20
    assert loop.time() - published_at >= 19 / 5 - 0.01  # timers may fire a tick early


async def test_middleware_runs_around_handlers_in_the_real_worker(
    hopline_service: ServiceFactory,
) -> None:
    registry = Registry("hooked")
    trail: list[str] = []

    @registry.middleware
    @asynccontextmanager
    async def tenant(envelope: Envelope) -> AsyncIterator[None]:
        if envelope.headers.get("tenant") == "banned":
            raise PermanentError("tenant is banned")
        trail.append(f"enter {envelope.headers.get('tenant')}")
        yield
        trail.append("leave")

    @registry.handler("orders.created")
    async def created(payload: Any) -> None:
        trail.append("handler")

    service = await hopline_service(registry)
    ok = await service.publish("orders.created", {}, headers={"tenant": "acme"})
    banned = await service.publish("orders.created", {}, headers={"tenant": "banned"})

    assert ok.acked
    assert trail == ["enter acme", "handler", "leave"]
    assert banned.quarantine is not None
    assert banned.quarantine.reason == "permanent: PermanentError: tenant is banned"
