"""Fixtures every test tier shares: the session's broker and a fresh vhost per test.

Tests are marked by folder (`unit/`, `integration/`, `e2e/`), so `-m unit` runs the fast
tier without anyone remembering to decorate a test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from consumer.testing_broker import PrivateNode
from deploy.local.broker import (
    LocalBroker,
    discard_local_broker,
    free_port,
    rabbitmq_server_available,
    start_local_broker,
)
from tests.support.broker import BrokerEndpoint, Management, Vhost, start_private_node
from tests.support.needs import missing
from tests.support.postgres import fresh_database

_TIERS = ("unit", "integration", "e2e")
_TESTS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            tier = item.path.relative_to(_TESTS_DIR).parts[0]
        except ValueError:  # a test outside tests/, e.g. given on the command line
            continue
        if tier in _TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def hopline_private_node() -> PrivateNode:
    """The plugin's last source of a broker: a private node from `rabbitmq-server`."""
    return start_private_node


@pytest.fixture(scope="session")
def broker(hopline_broker: BrokerEndpoint) -> BrokerEndpoint:
    """The session's RabbitMQ; skips (fails under CI=true) when none can be had. The same
    one the `hopline_*` fixtures of consumer.pytest_plugin use: one broker per session."""
    return hopline_broker


@pytest.fixture
def vhost(hopline_vhost: Vhost) -> Vhost:
    """A fresh vhost `test-<short uuid>` for this test, deleted with all it holds afterwards
    (the plugin's `hopline_vhost`: a test using both gets one vhost)."""
    return hopline_vhost


@pytest.fixture
def amqp_url(vhost: Vhost) -> str:
    """AMQP URL of this test's own vhost."""
    return vhost.amqp_url


@pytest.fixture
async def management(broker: BrokerEndpoint, vhost: Vhost) -> AsyncIterator[Management]:
    """The management API, defaulting to this test's vhost (e.g. `await queue_info(name)`)."""
    async with Management(broker, vhost.name) as api:
        yield api


@pytest.fixture
def private_broker() -> Iterator[LocalBroker]:
    """A RabbitMQ node of this test's own, for tests that stop, kill or restart a broker.

    Never the session's broker: other tests must not see it go away.
    """
    if not rabbitmq_server_available():
        missing("this test stops a broker and needs `rabbitmq-server` on PATH for its own node")
    base_dir = Path(tempfile.mkdtemp(prefix="hopline-private-broker-"))
    node = start_local_broker(base_dir)
    try:
        yield node
    finally:
        discard_local_broker(node)
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def unused_amqp_url() -> str:
    """An AMQP URL where nothing listens (a port we just found free)."""
    return f"amqp://guest:secret-pw@127.0.0.1:{free_port()}/"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own (`hopline_test_<uuid>`), dropped afterwards."""
    async with fresh_database() as url:
        yield url
