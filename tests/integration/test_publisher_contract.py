"""One contract, two implementations: the fake the unit tests use behaves like the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from common.errors import BrokerUnavailableError
from producer.publisher import BrokerPublisher, Publisher
from tests.fakes import FakePublisher
from tests.support.pipeline import drain, producer_settings
from tests.support.wait import wait_until

PublisherFactory = Callable[[str], Publisher]


def _real(amqp_url: str) -> Publisher:
    return BrokerPublisher(producer_settings(amqp_url, publish_timeout_s=2.0))


def _fake(_amqp_url: str) -> Publisher:
    return FakePublisher()


@pytest.fixture(params=[_real, _fake], ids=["broker", "fake"])
def make_publisher(request: pytest.FixtureRequest) -> PublisherFactory:
    factory: PublisherFactory = request.param
    return factory


@pytest.fixture
async def publisher(make_publisher: PublisherFactory, amqp_url: str) -> AsyncIterator[Publisher]:
    publisher = make_publisher(amqp_url)
    await publisher.start()
    await wait_until(lambda: publisher.ready, timeout_s=10, message="publisher never ready")
    yield publisher
    await publisher.close()


async def test_a_confirmed_publish_returns_quietly(publisher: Publisher, amqp_url: str) -> None:
    await publisher.publish(aio_pika.Message(b'{"n": 1}'), "normal.nobody.listens")
    if isinstance(publisher, BrokerPublisher):
        # No binding matched, so the alternate exchange kept it.
        [kept] = await drain(amqp_url, "hopline.unroutable")
        assert kept.body == b'{"n": 1}'


async def test_closed_publisher_is_not_ready_and_refuses(publisher: Publisher) -> None:
    await publisher.close()
    assert not publisher.ready
    with pytest.raises(BrokerUnavailableError):
        await publisher.publish(aio_pika.Message(b"{}"), "normal.a.b")


async def test_without_a_broker_publish_raises_unavailable(
    make_publisher: PublisherFactory, unused_amqp_url: str
) -> None:
    publisher = make_publisher(unused_amqp_url)
    if isinstance(publisher, FakePublisher):
        publisher.available = False
    await publisher.start()
    try:
        assert not publisher.ready
        with pytest.raises(BrokerUnavailableError):
            await publisher.publish(aio_pika.Message(b"{}"), "normal.a.b")
    finally:
        await publisher.close()
