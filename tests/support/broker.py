"""The project's side of the test broker: the management API as a test sees it, and the
private node from `rabbitmq-server` that is the last source of the session's broker.

The sources and the per-test vhosts live in `consumer.testing_broker` (shipped, so that
`consumer.pytest_plugin` gives users the same), re-exported here for the project's tests.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from consumer.testing_broker import (
    AMQP_URL_ENV,
    IMAGE_ENV,
    MANAGEMENT_URL_ENV,
    STATS_INTERVAL_MS,
    BrokerEndpoint,
    Vhost,
    Vhosts,
    management_client,
    provide_broker,
    raise_for_status,
)
from deploy.local.broker import (
    LocalBrokerError,
    discard_local_broker,
    rabbitmq_server_available,
    start_local_broker,
)

__all__ = [
    "AMQP_URL_ENV",
    "IMAGE_ENV",
    "MANAGEMENT_URL_ENV",
    "BrokerEndpoint",
    "Management",
    "Vhost",
    "Vhosts",
    "provide_broker",
    "start_private_node",
]


class Management:
    """The management HTTP API as one test sees it: its own vhost by default.

    Use as `async with Management(endpoint, vhost) as management: ...`.
    """

    def __init__(self, endpoint: BrokerEndpoint, vhost: str) -> None:
        self.base_url = endpoint.management_url
        self.user = endpoint.user
        self.password = endpoint.password
        self.vhost = vhost
        self._client = management_client(endpoint)

    async def __aenter__(self) -> Management:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def get(self, path: str) -> httpx.Response:
        """GET an API path such as `/api/overview`."""
        return await self._client.get(path)

    async def queue_info(self, name: str, *, vhost: str | None = None) -> dict[str, Any]:
        """GET /api/queues/<vhost>/<name>; LookupError when the queue does not exist.

        Message counts in the answer lag the broker by the statistics interval: poll them
        with `wait_until` rather than asserting once.
        """
        vhost_name = self.vhost if vhost is None else vhost
        path = f"/api/queues/{quote(vhost_name, safe='')}/{quote(name, safe='')}"
        response = await self._client.get(path)
        if response.status_code == httpx.codes.NOT_FOUND:
            raise LookupError(f"no queue {name!r} in vhost {vhost_name!r}")
        raise_for_status(response, f"read queue {name!r}")
        info: dict[str, Any] = response.json()
        return info

    async def close_connections(self, connection_name: str) -> int:
        """Close, from the broker's side (as the management UI's "Force Close" does), every
        connection of this vhost that the client named `connection_name`; how many."""
        path = f"/api/vhosts/{quote(self.vhost, safe='')}/connections"
        response = await self._client.get(path)
        raise_for_status(response, "list connections")
        closed = 0
        for connection in response.json():
            if connection.get("client_properties", {}).get("connection_name") != connection_name:
                continue
            closing = await self._client.delete(
                f"/api/connections/{quote(connection['name'], safe='')}",
                headers={"X-Reason": "closed by a test"},
            )
            raise_for_status(closing, f"close connection {connection['name']!r}")
            closed += 1
        return closed

    async def queue_exists(self, name: str, *, vhost: str | None = None) -> bool:
        try:
            await self.queue_info(name, vhost=vhost)
        except LookupError:
            return False
        return True


def start_private_node(cleanup: ExitStack, reasons: list[str]) -> BrokerEndpoint | None:
    """A private node from the `rabbitmq-server` on PATH: the last source of the session's
    broker (`consumer.testing_broker.PrivateNode`)."""
    if not rabbitmq_server_available():
        reasons.append("local node: rabbitmq-server/rabbitmqctl are not on PATH")
        return None
    # Not pytest's tmp_path: that is private to the current user (0700), and Debian's
    # wrapper runs the node as the `rabbitmq` user, who could not enter it.
    base_dir = Path(tempfile.mkdtemp(prefix="hopline-test-broker-"))
    cleanup.callback(shutil.rmtree, base_dir, ignore_errors=True)
    try:
        local = start_local_broker(
            base_dir, extra_config=f"collect_statistics_interval = {STATS_INTERVAL_MS}\n"
        )
    except LocalBrokerError as exc:
        reasons.append(f"local node: {exc}")
        return None
    cleanup.callback(discard_local_broker, local)
    return BrokerEndpoint(
        amqp_url=local.amqp_url,
        management_url=local.management_url,
        user="guest",
        password="guest",
    )
