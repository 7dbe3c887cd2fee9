"""A service whose set-up is cut halfway by the broker sets up again on the same connection.

The broker can go away between a service's connect and the end of its set-up (declaring
the topology, opening channels, consuming). Before common.service_connection, the error of
that moment (a library's, not hopline's) ended the set-up task unseen: the recorder never
recorded again, and its connection logged `broker.connection_lost` with no
`broker.connection_restored` after it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr
from structlog.testing import capture_logs

from common.events import Event, event_routing_key
from common.logging import get_logger
from common.service_connection import connect_and_set_up
from common.settings import HoplineSettings
from common.status.recorder import Recorder
from common.status.store import open_store
from common.topology import Topology
from tests.support.broker import Management
from tests.support.wait import wait_until

RECORDER = "hopline-recorder"


async def test_a_recorder_cut_off_halfway_through_set_up_records_and_consumes_once(
    amqp_url: str, management: Management, tmp_path: Path
) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(f"{amqp_url}?reconnect_interval=0.2"))
    store = open_store(f"sqlite:///{tmp_path / 'status.db'}", retention_s=3600)
    recorder = Recorder(settings, store, retry_s=0.2)
    watch = recorder.watch
    assert watch is not None
    attach = watch.attach
    cuts = 0

    async def attach_after_a_cut(connection: AbstractRobustConnection, topology: Topology) -> None:
        # Given the broker closes the connection once the status queue is consumed and
        # before the broker watch is set up (the last step of the recorder's set-up)
        nonlocal cuts
        if cuts == 0:
            cuts += 1
            await wait_until(lambda: management.close_connections(RECORDER), timeout_s=10)
            await wait_until(lambda: not connection.connected.is_set(), timeout_s=10)
        await attach(connection, topology)

    watch.attach = attach_after_a_cut  # type: ignore[method-assign]
    with capture_logs() as logs:
        await recorder.start()
        try:
            # Then it sets up again
            await wait_until(
                lambda: any(e["event"] == "status.recorder_started" for e in logs),
                timeout_s=30,
                message="the recorder never set up again",
            )
            # ... and records what arrives
            await _publish_succeeded(settings, "m-1")
            recorded = await wait_until(
                lambda: store.lookup("m-1", datetime.now(UTC)), timeout_s=30, message="unrecorded"
            )
            # ... from one consumer on its queue, not also from a channel of the cut attempt
            # that the connection reopened by itself
            consumers = await _consumers(amqp_url, settings.names.status)
        finally:
            await recorder.close()
            await store.close()

    assert cuts == 1
    assert [(s.service, s.state) for s in recorded.services] == [("demo", "succeeded")]
    assert consumers == 1
    # Said, at least once (a retry before the connection is back is said again)
    assert any(e["event"] == "status.recorder_waiting" for e in logs)
    outage = [e["event"] for e in logs if e.get("connection") == RECORDER]
    assert outage == ["broker.connection_lost", "broker.connection_restored"]


async def test_a_set_up_whose_call_the_connection_teardown_cancels_is_tried_again(
    amqp_url: str,
) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(amqp_url))
    attempts = 0

    async def set_up(_connection: AbstractRobustConnection) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:  # a pending call, failed as aiormq fails those of a dead connection
            pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending.cancel()
            await pending

    with capture_logs() as logs:
        connection = await connect_and_set_up(
            settings,
            name="test",
            set_up=set_up,
            retry_s=0.05,
            log=get_logger("test"),
            waiting="test.waiting",
        )
    try:
        assert attempts == 2
        assert connection.connected.is_set() and not connection.is_closed
    finally:
        await connection.close()
    assert [e["event"] for e in logs if e["event"] == "test.waiting"] == ["test.waiting"]


async def _publish_succeeded(settings: HoplineSettings, message_id: str) -> None:
    event = Event(
        event="succeeded",
        message_id=message_id,
        service="demo",
        type="orders.created",
        routing_key="normal.orders.created",
        attempt=1,
        at=datetime.now(UTC),
    )
    async with await aio_pika.connect(settings.amqp_url.get_secret_value()) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(settings.names.events)
        await exchange.publish(
            aio_pika.Message(event.to_json()), event_routing_key("demo", "succeeded")
        )


async def _consumers(amqp_url: str, queue: str) -> int:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
