"""Declaring the topology on a real broker: idempotent, and clear about conflicts."""

from __future__ import annotations

import aio_pika
import pytest
from pydantic import SecretStr

from common.connection import broker_version, connect
from common.declare import declare_topology
from common.errors import TopologyMismatchError
from common.settings import HoplineSettings
from common.topology import service_topology
from tests.support.broker import Management


def _settings(amqp_url: str, **overrides: object) -> HoplineSettings:
    return HoplineSettings(amqp_url=SecretStr(amqp_url), **overrides)  # type: ignore[arg-type]


async def test_declaring_twice_changes_nothing(amqp_url: str, management: Management) -> None:
    settings = _settings(amqp_url)
    connection = await connect(settings, name="test")
    try:
        topology = service_topology(
            settings, "orders", ["orders.created"], broker_version(connection)
        )
        await declare_topology(connection, topology)
        await declare_topology(connection, topology)
    finally:
        await connection.close()
    info = await management.queue_info("hopline.orders.quarantine")
    assert info["type"] == "quorum"
    assert "x-message-ttl" not in info["arguments"]
    work = await management.queue_info("hopline.orders.high")
    assert work["arguments"]["x-dead-letter-exchange"] == "hopline.dlx"
    assert work["arguments"]["x-delivery-limit"] == settings.delivery_limit


async def test_a_conflicting_queue_type_names_queue_values_and_fix(amqp_url: str) -> None:
    # Given a queue someone declared as classic
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.declare_queue("hopline.orders.high", durable=True)
    await connection.close()

    # When hopline declares its quorum queue of the same name
    settings = _settings(amqp_url)
    hopline = await connect(settings, name="test")
    try:
        with pytest.raises(TopologyMismatchError) as caught:
            await declare_topology(
                hopline, service_topology(settings, "orders", ["#"], broker_version(hopline))
            )
    finally:
        await hopline.close()
    # Then the error names the queue, both values and the fix
    text = str(caught.value)
    assert "'hopline.orders.high'" in text
    assert "already exists with x-" in text
    assert "but hopline declares x-" in text
    assert "Fix: move its messages away" in text
