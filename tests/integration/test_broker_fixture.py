"""The broker fixtures themselves: a real round trip, and vhosts that isolate tests."""

from __future__ import annotations

import aio_pika
import pytest

from tests.support.broker import BrokerEndpoint, Management, Vhosts

QUEUE = "hopline.fixture-check"


async def test_round_trip_through_a_quorum_queue_in_the_test_vhost(
    amqp_url: str, management: Management
) -> None:
    # Given a connection to this test's vhost and a quorum queue in it
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )

        # When a persistent message is published and confirmed
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(
                b'{"hello": "hopline"}', delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=QUEUE,
        )

        # Then the broker confirmed it, and the same body comes back out of the queue
        assert confirmation is not None
        message = await queue.get(timeout=5, fail=True)
        assert message is not None
        await message.ack()
        assert message.body == b'{"hello": "hopline"}'

    info = await management.queue_info(QUEUE)
    assert info["vhost"] == management.vhost
    assert info["arguments"]["x-queue-type"] == "quorum"


async def test_a_queue_in_one_vhost_does_not_exist_in_another(
    broker: BrokerEndpoint, amqp_url: str, management: Management
) -> None:
    # Given a second vhost besides this test's own
    async with Vhosts(broker) as vhosts:
        other = await vhosts.create()
        assert other.name != management.vhost
        assert other.amqp_url != amqp_url

        # When a queue is declared in this test's vhost
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(QUEUE, durable=True)

        # Then the management API sees it there, and only there
        assert await management.queue_exists(QUEUE)
        with pytest.raises(LookupError):
            await management.queue_info(QUEUE, vhost=other.name)

    # And the second vhost is gone again once its helper closed
    response = await management.get(f"/api/vhosts/{other.name}")
    assert response.status_code == 404


_vhost_names: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
async def test_every_test_gets_its_own_fresh_vhost(
    run: int, amqp_url: str, management: Management
) -> None:
    # Given earlier tests used vhosts of their own, and left queues behind in them
    assert management.vhost.startswith("test-")
    assert management.vhost not in _vhost_names
    _vhost_names.append(management.vhost)

    # Then nothing of theirs is visible here, and their vhosts were deleted
    response = await management.get(f"/api/queues/{management.vhost}")
    assert response.json() == []
    for earlier in _vhost_names[:-1]:
        gone = await management.get(f"/api/vhosts/{earlier}")
        assert gone.status_code == 404

    # (and this run leaves a queue behind for the next one not to see)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(f"left-behind-by-run-{run}", durable=True)
