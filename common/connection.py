"""Robust broker connections with errors a person can act on."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aiormq.exceptions import AMQPConnectionError

from common.errors import BrokerUnavailableError
from common.redact import redact_url
from common.settings import HoplineSettings
from common.topology import BrokerVersion

__all__ = ["broker_version", "connect"]


async def connect(
    settings: HoplineSettings, *, name: str, timeout_s: float = 10.0
) -> AbstractRobustConnection:
    """Open a connection that reconnects by itself; `name` shows in the management UI."""
    url = settings.amqp_url.get_secret_value()
    try:
        return await aio_pika.connect_robust(
            url,
            timeout=timeout_s,
            client_properties={"connection_name": name},
        )
    except (AMQPConnectionError, OSError, TimeoutError) as exc:
        reason = redact_url(str(exc)) or type(exc).__name__
        raise BrokerUnavailableError(
            f"cannot connect to RabbitMQ at {redact_url(url)}: {reason}"
        ) from exc


def broker_version(connection: AbstractConnection) -> BrokerVersion:
    """The server's version from the connection handshake."""
    properties = connection.transport.connection.server_properties  # type: ignore[union-attr]
    return BrokerVersion.parse(properties.get("version"))  # type: ignore[arg-type]
