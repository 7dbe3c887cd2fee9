"""Publish envelopes to the ingress exchange and return only once the broker confirmed them.

The publisher keeps one robust connection. It starts without a broker (the service answers
503 until one is reachable), declares the core topology whenever it (re)connects, and turns
every way a publish can fail into `BrokerUnavailableError` or `PublishNotConfirmedError`, so
the HTTP layer never has to know about AMQP.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq.exceptions import ChannelAccessRefused

from common.connection import access_refused_error, broker_version
from common.declare import declare_topology
from common.delays import delay_exchanges, publish_route
from common.errors import BrokerUnavailableError, PublishNotConfirmedError
from common.logging import get_logger
from common.service_connection import connect_and_set_up
from common.settings import HoplineSettings
from common.topology import core_topology

__all__ = ["BrokerPublisher", "NoPublisher", "Publisher"]

_log = get_logger("hopline.producer")


class Publisher(Protocol):
    """What the HTTP layer needs; tests may pass any object with this shape."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(
        self, message: aio_pika.Message, routing_key: str, delay_s: float | None = None
    ) -> None:
        """Return once confirmed; raise BrokerUnavailableError or PublishNotConfirmedError.
        With `delay_s`, the message waits in the delay levels and is routed by
        `routing_key` when it is due (common.delays)."""


class BrokerPublisher:
    def __init__(self, settings: HoplineSettings, *, reconnect_interval_s: float = 1.0) -> None:
        self._settings = settings
        self._reconnect_interval_s = reconnect_interval_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._topology_declared = False
        self._connector: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and connection.connected.is_set()
            and self._topology_declared
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self) -> None:
        """Begin connecting in the background; the service is up even while the broker is not."""
        self._connector = asyncio.create_task(self._connect_until_done(), name="hopline-connect")

    async def _connect_until_done(self) -> None:
        connection = await connect_and_set_up(
            self._settings,
            name="hopline-producer",
            set_up=self._set_up,
            retry_s=self._reconnect_interval_s,
            log=_log,
            waiting="broker.unavailable",
        )
        # Losing and regaining the connection is logged once each by common.connection.
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection = connection
        _log.info("broker.connected", exchange=self._settings.names.ingress)

    async def _set_up(self, connection: AbstractRobustConnection) -> None:
        await self._declare(connection)
        # Opening is the channel's last step that can fail: nothing to close after a failure.
        self._channel = await connection.channel(publisher_confirms=True)
        names = self._settings.names
        self._exchanges = {
            name: await self._channel.get_exchange(name, ensure=False)
            for name in (names.ingress, *delay_exchanges(names))
        }

    async def _declare(self, connection: AbstractRobustConnection) -> None:
        topology = core_topology(self._settings, broker_version(connection))
        await declare_topology(connection, topology)
        self._topology_declared = True

    async def _on_reconnect(self, *_args: object) -> None:
        if self._connection is None:
            return
        await self._declare(self._connection)

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._topology_declared = False

    async def publish(
        self, message: aio_pika.Message, routing_key: str, delay_s: float | None = None
    ) -> None:
        exchange_name, routing_key = publish_route(self._settings.names, routing_key, delay_s)
        exchange = self._exchanges.get(exchange_name)
        if exchange is None or not self.ready:
            raise BrokerUnavailableError("RabbitMQ is not reachable right now")
        timeout_s = self._settings.publish_timeout_s
        try:
            # One deadline for everything: the confirm, and waiting for a reconnect or a
            # blocked connection (memory or disk alarm), where aio-pika's own timeout does not
            # apply. (Passing aio-pika a timeout as well cost a second timer per message.)
            async with asyncio.timeout(timeout_s):
                await exchange.publish(message, routing_key, mandatory=True)
        except TimeoutError as exc:
            raise PublishNotConfirmedError(
                f"the broker did not confirm the publish within {timeout_s:g} s"
            ) from exc
        except asyncio.CancelledError as exc:
            # aiormq fails a pending confirm with CancelledError when it tears down a dead
            # connection (a heartbeat timeout): that is the broker gone, not this request
            # cancelled, and must be a 503, never a 500.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise BrokerUnavailableError("lost the broker while publishing") from exc
        except DeliveryError as exc:
            raise PublishNotConfirmedError(f"the broker refused the message: {exc}") from exc
        except PublishError as exc:
            raise PublishNotConfirmedError(f"the broker returned the message: {exc}") from exc
        except ChannelAccessRefused as exc:  # this user may not write to the exchange
            raise access_refused_error(exc) from exc
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailableError(f"lost the broker while publishing: {exc}") from exc


class NoPublisher:
    """The admin-only process (HOPLINE_SERVE=admin) publishes nothing: it runs as the
    operator's broker user, which may not declare the ingress topology a publisher needs."""

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(
        self, message: aio_pika.Message, routing_key: str, delay_s: float | None = None
    ) -> None:
        raise BrokerUnavailableError("this process serves the admin API only")
