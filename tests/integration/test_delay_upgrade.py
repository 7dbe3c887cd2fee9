"""Upgrading from the fixed retry tiers to the delay levels loses nothing (common.legacy_tiers).

Each test starts from what an earlier version left: its tier queues, bound to the direct
exchange `hopline.retry` and dead-lettering into `hopline.requeue`, with messages in them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
from click.testing import Result
from pydantic import SecretStr
from typer.testing import CliRunner

from common import headers as h
from common.connection import broker_version
from common.declare import declare_topology
from common.names import Names
from common.settings import HoplineSettings
from common.topology import service_topology
from consumer.cli import app
from consumer.registry import Registry
from tests.support.legacy import declare_legacy_tier
from tests.support.pipeline import consumer_settings, queue_depth, running_worker
from tests.support.wait import wait_until

NAMES = Names()
SERVICE = "billing"
TYPE = "billing.charge"
WORK_QUEUE = NAMES.work_queue(SERVICE, "normal")


async def _earlier_version_with_a_waiting_retry(amqp_url: str, tier_delay_s: float) -> str:
    """The work queues as every version declares them, an old tier, and a retry copy in it
    (attempt 2, bound for `WORK_QUEUE`), as an earlier consumer published it."""
    settings = HoplineSettings(amqp_url=SecretStr(amqp_url))
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        version = broker_version(connection)  # type: ignore[arg-type]
        await declare_topology(connection, service_topology(settings, SERVICE, [TYPE], version))
        channel = await connection.channel(publisher_confirms=True)
        exchange, tier = await declare_legacy_tier(channel, NAMES, tier_delay_s)
        await exchange.publish(
            aio_pika.Message(
                b'{"amount": 5}',
                message_id="waiting-since-the-old-version",
                type=TYPE,
                delivery_mode=2,
                headers={
                    h.ATTEMPT: 2,
                    h.ORIGIN_QUEUE: WORK_QUEUE,
                    h.ROUTING_KEY: f"normal.{TYPE}",
                },
            ),
            tier,
            mandatory=True,
        )
    return tier


async def test_a_retry_waiting_in_an_old_tier_is_handled_after_the_upgrade(
    amqp_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a retry copy waiting 5 s in a tier of the earlier version (one of its defaults)
    tier = await _earlier_version_with_a_waiting_retry(amqp_url, 5)
    registry = Registry(SERVICE)
    seen: list[tuple[str | None, int]] = []

    @registry.handler(TYPE)
    async def charge(payload: Any, envelope: Any) -> None:
        seen.append((envelope.message_id, envelope.attempt))

    # When this version's worker starts while it waits
    async with running_worker(consumer_settings(amqp_url), registry):
        assert await queue_depth(amqp_url, tier) == 1
        await wait_until(lambda: seen, timeout_s=20, message="the old tier's message never came")
    # Then it is handled once, as the attempt it was waiting for, and the start said why the
    # old tier is still there
    assert seen == [("waiting-since-the-old-version", 2)]
    assert await queue_depth(amqp_url, WORK_QUEUE) == 0
    assert await queue_depth(amqp_url, NAMES.quarantine(SERVICE)) == 0
    assert "topology.legacy_retry_tiers" in capsys.readouterr().out


async def test_retire_tiers_deletes_empty_old_tiers_and_keeps_those_still_holding_messages(
    amqp_url: str,
) -> None:
    # Given an old 5 s tier that has emptied, and an old 10 min tier holding a retry
    await _earlier_version_with_a_waiting_retry(amqp_url, 600)
    await _earlier_version_with_a_waiting_retry(amqp_url, 1)

    async def emptied() -> bool:
        return await queue_depth(amqp_url, NAMES.legacy_retry_queue(1)) == 0

    await wait_until(emptied, timeout_s=15, message="the 1 s tier did not empty")

    # When an operator retires the tiers
    first = await _retire_tiers(amqp_url)

    # Then the empty one is gone, the one with a message stays, and so does the exchange
    assert first.exit_code == 0, first.output
    assert f"deleted {NAMES.legacy_retry_queue(1)}" in first.output
    assert f"kept {NAMES.legacy_retry_queue(600)}: 1 messages still wait there" in first.output
    assert await queue_depth(amqp_url, NAMES.legacy_retry_queue(600)) == 1
    assert f"deleted {NAMES.legacy_retry}\n" not in first.output

    # ... and once that one is empty too, a second run removes it and the exchange
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(NAMES.legacy_retry_queue(600), ensure=False)
        await queue.purge()
    second = await _retire_tiers(amqp_url)
    assert second.exit_code == 0, second.output
    assert f"deleted {NAMES.legacy_retry_queue(600)}" in second.output
    assert f"deleted {NAMES.legacy_retry}" in second.output
    third = await _retire_tiers(amqp_url)
    assert "nothing to do" in third.output


async def _retire_tiers(amqp_url: str) -> Result:
    """`hopline topology retire-tiers`, in a thread: the command runs its own event loop."""
    env = {"HOPLINE_AMQP_URL": amqp_url}
    return await asyncio.to_thread(CliRunner().invoke, app, ["topology", "retire-tiers"], env=env)
