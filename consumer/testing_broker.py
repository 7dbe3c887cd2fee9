"""A RabbitMQ for tests, and a fresh vhost per test: what `consumer.pytest_plugin` gives a
service's tests, and the project's own tests use too.

One session-wide broker comes from the first source that works:

1. `HOPLINE_TEST_AMQP_URL` (+ `HOPLINE_TEST_MANAGEMENT_URL`, default `http://<host>:15672`):
   a broker someone already runs, e.g. docker compose or CI services. It needs the
   management plugin, because vhosts are created through its HTTP API.
2. A testcontainers `RabbitMqContainer` (management image, `HOPLINE_TEST_RABBITMQ_IMAGE`)
   when a Docker daemon answers (`pip install 'testcontainers[rabbitmq]'`).
3. A private node, when the caller passes a `PrivateNode` source (the project's tests start
   one from the `rabbitmq-server` on PATH with `deploy.local.broker`, which is local tooling
   and never part of this package).

Whichever it is, the provider waits for a real AMQP handshake and for the management API.
When none works the tests are skipped with the reasons, except under `CI=true`, where that
is a failure: a CI run that skipped every broker test would be green and worthless.

Tests never share state: each gets its own vhost (`Vhosts`), deleted afterwards, so queues,
exchanges and messages of one test cannot leak into another.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pytest

__all__ = [
    "AMQP_URL_ENV",
    "IMAGE_ENV",
    "MANAGEMENT_URL_ENV",
    "STATS_INTERVAL_MS",
    "BrokerEndpoint",
    "PrivateNode",
    "Vhost",
    "Vhosts",
    "management_client",
    "missing",
    "provide_broker",
    "raise_for_status",
]

AMQP_URL_ENV = "HOPLINE_TEST_AMQP_URL"
MANAGEMENT_URL_ENV = "HOPLINE_TEST_MANAGEMENT_URL"
IMAGE_ENV = "HOPLINE_TEST_RABBITMQ_IMAGE"
_DEFAULT_IMAGE = "rabbitmq:4-management"
_READY_TIMEOUT_S = 60.0  # a container or compose broker may still be booting
# Management statistics (queue depths in GET /api/queues) refresh at this interval; the
# default 5 s would make every test that waits for a queue count slow. Brokers we start only.
STATS_INTERVAL_MS = 1000
_AMQP_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


def missing(message: str) -> NoReturn:
    """A test's real component is missing: skip on a laptop, fail under `CI=true` (a CI run
    that skipped its broker tests would be green and worthless)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class BrokerEndpoint:
    """How tests reach the session's broker."""

    amqp_url: str
    management_url: str
    user: str
    password: str

    def vhost_amqp_url(self, vhost: str) -> str:
        """The AMQP URL of `vhost` on this broker (the name is quoted: `/` becomes `%2F`)."""
        parts = urlsplit(self.amqp_url)
        return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@dataclass(frozen=True)
class Vhost:
    """A test's own vhost and the AMQP URL that connects to it."""

    name: str
    amqp_url: str


class Vhosts:
    """Creates vhosts through the management API and deletes them again on exit.

    Use as `async with Vhosts(endpoint) as vhosts: vhost = await vhosts.create()`.
    """

    def __init__(self, endpoint: BrokerEndpoint) -> None:
        self._endpoint = endpoint
        self._client = management_client(endpoint)
        self._created: list[str] = []

    async def __aenter__(self) -> Vhosts:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for name in reversed(self._created):
                await self.delete(name)
        finally:
            await self._client.aclose()

    async def create(self, name: str | None = None) -> Vhost:
        """A new empty vhost on which the endpoint's user may do everything."""
        name = name or f"test-{uuid.uuid4().hex[:8]}"
        quoted = quote(name, safe="")
        response = await self._client.put(f"/api/vhosts/{quoted}")
        raise_for_status(response, f"create vhost {name!r}")
        self._created.append(name)
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        user = quote(self._endpoint.user, safe="")
        response = await self._client.put(f"/api/permissions/{quoted}/{user}", json=permissions)
        raise_for_status(response, f"grant {self._endpoint.user!r} access to vhost {name!r}")
        return Vhost(name=name, amqp_url=self._endpoint.vhost_amqp_url(name))

    async def delete(self, name: str) -> None:
        """Delete a vhost and everything in it; deleting a missing vhost is fine."""
        response = await self._client.delete(f"/api/vhosts/{quote(name, safe='')}")
        if response.status_code != httpx.codes.NOT_FOUND:
            raise_for_status(response, f"delete vhost {name!r}")
        if name in self._created:
            self._created.remove(name)


# The last source of a broker: given the session's cleanup stack and the list of reasons
# why sources failed, an endpoint, or None (with a reason appended).
PrivateNode = Callable[[ExitStack, list[str]], BrokerEndpoint | None]


@contextmanager
def provide_broker(private_node: PrivateNode | None = None) -> Iterator[BrokerEndpoint]:
    """Yield the session's broker (see the module docstring for the order of sources);
    `private_node` is the last source, e.g. a node started from `rabbitmq-server`."""
    external = os.environ.get(AMQP_URL_ENV)
    if external:
        endpoint = _external_endpoint(external)
        problem = _wait_until_ready(endpoint, _READY_TIMEOUT_S)
        if problem:
            pytest.fail(f"{AMQP_URL_ENV} is set, but {problem}", pytrace=False)
        yield endpoint
        return
    reasons: list[str] = []
    with ExitStack() as cleanup:
        endpoint_or_none = _start_container(cleanup, reasons)
        if endpoint_or_none is None and private_node is not None:
            endpoint_or_none = private_node(cleanup, reasons)
        if endpoint_or_none is None:
            _no_broker(reasons)
        yield endpoint_or_none


# --- sources -----------------------------------------------------------------------------


def _external_endpoint(amqp_url: str) -> BrokerEndpoint:
    parts = urlsplit(amqp_url)
    host = parts.hostname or "localhost"
    management_url = os.environ.get(MANAGEMENT_URL_ENV) or f"http://{host}:15672"
    return BrokerEndpoint(
        amqp_url=amqp_url,
        management_url=management_url.rstrip("/"),
        user=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
    )


def _start_container(cleanup: ExitStack, reasons: list[str]) -> BrokerEndpoint | None:
    if not _docker_answers(reasons):
        return None
    from testcontainers.community.rabbitmq import RabbitMqContainer

    image = os.environ.get(IMAGE_ENV, _DEFAULT_IMAGE)
    container = (
        RabbitMqContainer(image)
        .with_exposed_ports(15672)
        .with_env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            f"-rabbit collect_statistics_interval {STATS_INTERVAL_MS}",
        )
    )
    try:
        container.start()
    except Exception as exc:  # image pull, port mapping, readiness: all mean "not this way"
        reasons.append(f"Docker answers, but container {image} did not start: {exc}")
        with contextlib.suppress(Exception):
            container.stop()
        return None
    cleanup.callback(container.stop)
    host = container.get_container_host_ip()
    endpoint = BrokerEndpoint(
        amqp_url=f"amqp://guest:guest@{host}:{container.get_exposed_port(5672)}/",
        management_url=f"http://{host}:{container.get_exposed_port(15672)}",
        user="guest",
        password="guest",
    )
    problem = _wait_until_ready(endpoint, _READY_TIMEOUT_S)
    if problem:
        reasons.append(f"container {image} started, but {problem}")
        return None
    return endpoint


def _docker_answers(reasons: list[str]) -> bool:
    """Whether a Docker daemon answers `GET /_ping` within a few seconds.

    A raw socket rather than the docker package or httpx: both leave the socket unclosed when
    the connect fails, and that ResourceWarning fails the run (warnings are errors).
    """
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    scheme, _, address = docker_host.partition("://")
    tls = os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
    if scheme not in ("unix", "tcp") or tls:  # ssh://, TLS: no cheap probe, let testcontainers try
        return True
    request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
    try:
        if scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(3)
                conn.connect(address)
                conn.sendall(request)
                status_line = conn.recv(64)
        else:
            host, _, port = address.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=3) as conn:
                conn.sendall(request)
                status_line = conn.recv(64)
    except (OSError, ValueError) as exc:
        reasons.append(f"Docker: no daemon answers at {docker_host} ({exc})")
        return False
    if b" 200 " not in status_line.split(b"\r\n", 1)[0] + b" ":
        reasons.append(f"Docker: {docker_host} did not answer /_ping with 200 OK")
        return False
    return True


def _no_broker(reasons: list[str]) -> NoReturn:
    message = (
        "No RabbitMQ for the broker tests.\n"
        + "".join(f"  - {reason}\n" for reason in reasons)
        + f"Set {AMQP_URL_ENV}=amqp://guest:guest@HOST:5672/ (broker with the management "
        f"plugin; {MANAGEMENT_URL_ENV} if not http://HOST:15672), start Docker, or install "
        "rabbitmq-server."
    )
    missing(message)


# --- readiness ---------------------------------------------------------------------------


def _wait_until_ready(endpoint: BrokerEndpoint, timeout_s: float) -> str | None:
    """None once AMQP and the management API answer, else what is still wrong at the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = _amqp_problem(endpoint.amqp_url) or _management_problem(endpoint)
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(0.2)


def _amqp_problem(amqp_url: str) -> str | None:
    parts = urlsplit(amqp_url)
    address = (parts.hostname or "localhost", parts.port or 5672)
    try:
        with socket.create_connection(address, timeout=2) as conn:
            conn.sendall(_AMQP_PROTOCOL_HEADER)
            first = conn.recv(1)
    except OSError as exc:
        return f"AMQP at {address[0]}:{address[1]} does not answer ({exc})"
    if first != b"\x01":
        return f"{address[0]}:{address[1]} does not speak AMQP 0-9-1"
    return None


def _management_problem(endpoint: BrokerEndpoint) -> str | None:
    url = f"{endpoint.management_url}/api/overview"
    try:
        response = httpx.get(url, auth=(endpoint.user, endpoint.password), timeout=5)
    except httpx.HTTPError as exc:
        return f"the management API at {url} does not answer ({exc})"
    if response.status_code != httpx.codes.OK:
        return f"the management API at {url} answered {response.status_code}"
    return None


def management_client(endpoint: BrokerEndpoint) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=endpoint.management_url,
        auth=(endpoint.user, endpoint.password),
        timeout=30,
    )


def raise_for_status(response: httpx.Response, doing: str) -> None:
    if response.is_success:
        return
    raise AssertionError(
        f"management API: could not {doing}: {response.request.method} {response.request.url} "
        f"answered {response.status_code} {response.text[:500]}"
    )
