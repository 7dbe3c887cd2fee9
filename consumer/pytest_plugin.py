"""pytest fixtures for a service's tests on a real RabbitMQ (the `pytest11` plugin `hopline`).

Installed with hopline, so a service's own tests only name the fixtures (all prefixed
`hopline_`, so they never clash with a project's own):

    async def test_a_reservation_is_acked(hopline_service):
        service = await hopline_service(registry)
        result = await service.publish("stock.reserve", {"sku": "apple", "quantity": 2})
        assert result.acked

- `hopline_broker` (session): the broker, from `HOPLINE_TEST_AMQP_URL`, else a testcontainers
  RabbitMQ, else `hopline_private_node` (consumer.testing_broker); skipped with the reasons
  when none answers, a failure under `CI=true`.
- `hopline_vhost` / `hopline_amqp_url`: a fresh vhost for this test, deleted afterwards.
- `hopline_service(registry, **settings)`: a running `Worker` for the registry on that vhost
  (stopped after the test) with `publish(...)`, which publishes to the ingress exchange with
  a confirm and returns the delivery's `consumer.testing.Result` once the worker settled it.

Needs `pytest-asyncio` and, for the container, `testcontainers[rabbitmq]` (the `testing` extra).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pydantic import SecretStr

from common.envelope import new_envelope, to_message
from consumer.policy import Decision, Outcome
from consumer.registry import Registry
from consumer.settings import ConsumerSettings
from consumer.testing import Result
from consumer.testing_broker import BrokerEndpoint, PrivateNode, Vhost, Vhosts, provide_broker
from consumer.worker import Worker

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - the async fixtures then fail with pytest's message
    async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["RunningService", "ServiceFactory"]


class RunningService:
    """A worker consuming a registry's queues, and a publisher that waits for outcomes."""

    def __init__(self, settings: ConsumerSettings, registry: Registry) -> None:
        self.worker = Worker(settings, registry, on_settled=self.settled)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._results: dict[str, list[Result]] = defaultdict(list)
        self._changed = asyncio.Event()

    async def start(self) -> None:
        amqp_url = self.worker.settings.amqp_url.get_secret_value()
        self._connection = await aio_pika.connect_robust(amqp_url)
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        if self._connection is not None:
            await self._connection.close()

    def settled(self, message_id: str | None, decision: Decision, outcome: Outcome) -> None:
        """The worker's `on_settled`: record the delivery's end."""
        self._results[message_id or ""].append(Result(decision, outcome))
        self._changed.set()

    async def publish(
        self, message_type: str, payload: Any, *, timeout_s: float = 10.0, **options: Any
    ) -> Result:
        """Publish as `send()` does (same `options`) and return how its first delivery ended;
        `results()` waits for later ones (its retries)."""
        sent = await self.send(message_type, payload, **options)
        return (await self.results(sent, count=1, timeout_s=timeout_s))[0]

    async def send(
        self,
        message_type: str,
        payload: Any,
        *,
        priority: str = "normal",
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish as the producer does (persistent, with a confirm) without waiting for the
        outcome; returns the message id."""
        assert self._connection is not None, "RunningService.start() was not awaited"
        envelope = new_envelope(
            message_type,
            payload,
            priority,
            app_id="hopline-pytest",
            headers=headers,
            message_id=message_id,
        )
        if self._channel is None:
            self._channel = await self._connection.channel(publisher_confirms=True)
        exchange = await self._channel.get_exchange(
            self.worker.settings.names.ingress, ensure=False
        )
        await exchange.publish(to_message(envelope), envelope.routing_key, mandatory=True)
        return envelope.message_id

    async def results(
        self, message_id: str, *, count: int, timeout_s: float = 10.0
    ) -> list[Result]:
        """The first `count` ends of a message's deliveries (a retry comes back as another)."""
        async with asyncio.timeout(timeout_s):
            while len(self._results[message_id]) < count:
                self._changed.clear()
                await self._changed.wait()
        return self._results[message_id][:count]


ServiceFactory = Callable[..., Awaitable[RunningService]]


@pytest.fixture(scope="session")
def hopline_private_node() -> PrivateNode | None:
    """The last source of `hopline_broker`; override it to start a broker of your own."""
    return None


@pytest.fixture(scope="session")
def hopline_broker(hopline_private_node: PrivateNode | None) -> Iterator[BrokerEndpoint]:
    """The session's RabbitMQ (with the management plugin, which creates the vhosts)."""
    with provide_broker(hopline_private_node) as endpoint:
        yield endpoint


@async_fixture
async def hopline_vhost(hopline_broker: BrokerEndpoint) -> AsyncIterator[Vhost]:
    """A fresh vhost for this test, deleted with everything in it afterwards."""
    async with Vhosts(hopline_broker) as vhosts:
        yield await vhosts.create()


@pytest.fixture
def hopline_amqp_url(hopline_vhost: Vhost) -> str:
    return hopline_vhost.amqp_url


@async_fixture
async def hopline_service(hopline_amqp_url: str) -> AsyncIterator[ServiceFactory]:
    """`await hopline_service(registry, **settings)`: a running worker for `registry` on this
    test's vhost; `settings` are ConsumerSettings fields, e.g. `concurrency=4`."""
    running: list[RunningService] = []

    async def start(registry: Registry, **settings: Any) -> RunningService:
        values: dict[str, Any] = {"shutdown_grace_s": 5.0, **settings}
        values["amqp_url"] = SecretStr(hopline_amqp_url)
        service = RunningService(ConsumerSettings(**values), registry)
        running.append(service)
        await service.start()
        return service

    try:
        yield start
    finally:
        for service in reversed(running):
            await service.stop()
