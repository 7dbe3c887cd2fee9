"""Outage protection: while a handler's dependency is down, the consumer pauses instead of
draining the queue into quarantine; afterwards quarantine holds only the poisoned messages."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import orjson
import pytest
from structlog.testing import capture_logs

from common.names import Names
from consumer import PermanentError, Registry, RetryableError
from tests.support.pipeline import (
    consumer_settings,
    drain,
    publish_raw,
    queue_depth,
    running_worker,
)
from tests.support.wait import wait_until

NAMES = Names()
MESSAGES, POISONED = 200, 5


def _registry(database: dict[str, bool], handled: set[int]) -> Registry:
    registry = Registry("outage")

    @registry.handler("jobs.store", max_attempts=5)
    async def store(payload: Any) -> None:
        if payload.get("poison"):
            raise PermanentError("this message can never be stored")
        if not database["up"]:
            raise RetryableError("the database is down")
        handled.add(payload["n"])

    return registry


@pytest.mark.parametrize("breaker", [True, False], ids=["breaker-on", "breaker-off"])
async def test_a_dependency_outage_pauses_consuming_instead_of_quarantining(
    amqp_url: str, breaker: bool
) -> None:
    database = {"up": False}
    handled: set[int] = set()
    options: dict[str, Any] = {"concurrency": 4}
    if breaker:
        options.update(
            breaker_failure_ratio=0.5,
            breaker_window_s=10,
            breaker_min_outcomes=10,
            breaker_cooldown_s=1,
            breaker_probes=3,
        )
    settings = consumer_settings(amqp_url, **options)
    poisoned = set(range(0, MESSAGES, MESSAGES // POISONED))
    with capture_logs() as logs:
        async with running_worker(settings, _registry(database, handled)):
            # Given a queue of messages, a few of them poisoned, and the database down
            for n in range(MESSAGES):
                body = orjson.dumps({"n": n, "poison": n in poisoned})
                await publish_raw(
                    amqp_url, NAMES.ingress, "normal.jobs.store", aio_pika.Message(body)
                )
            # When the database stays down for 6 seconds, then comes back: longer than a
            # message's five attempts with 1 s between them
            await asyncio.sleep(6)  # the outage's own length
            database["up"] = True
            # Then every message ends stored or quarantined (a deadline-based wait: with
            # both counts settled, the assertions below are exact, not a snapshot)
            quarantine = NAMES.quarantine("outage")

            async def settled() -> bool:
                return len(handled) + await queue_depth(amqp_url, quarantine) == MESSAGES

            await wait_until(settled, timeout_s=60, message="messages neither stored nor kept")
    quarantined = {orjson.loads(m.body)["n"] for m in await drain(amqp_url, quarantine)}
    events = [entry["event"] for entry in logs]
    if breaker:
        # ... and quarantine holds only the poisoned ones; consuming paused and resumed
        assert quarantined == poisoned
        assert handled == set(range(MESSAGES)) - poisoned
        assert "consumer.paused" in events and "consumer.resumed" in events
    else:
        # ... without the breaker, retries alone run out during the outage (the problem it
        # solves): all 200 end in quarantine, poisoned or not, and none is stored
        assert len(quarantined) == MESSAGES
        assert quarantined == set(range(MESSAGES))
        assert handled == set()
        assert "consumer.paused" not in events
