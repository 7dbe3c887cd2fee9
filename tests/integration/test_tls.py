"""TLS to the broker: a private node with a TLS listener and certificates made by trustme."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from common.connection import connect
from common.errors import BrokerUnavailableError, ConfigurationError
from common.settings import HoplineSettings
from consumer import Registry
from consumer.worker import Worker
from deploy.local.broker import (
    LocalBroker,
    discard_local_broker,
    free_port,
    rabbitmq_server_available,
    start_local_broker,
)
from tests.support.needs import missing
from tests.support.pipeline import (
    consumer_settings,
    producer_client,
    producer_settings,
    running_worker,
)
from tests.support.wait import wait_until


@dataclass(frozen=True)
class TlsNode:
    node: LocalBroker
    tls_port: int
    ca_file: Path
    client_cert_file: Path
    client_key_file: Path
    other_ca_file: Path

    def url(self, host: str = "localhost") -> str:
        return f"amqps://guest:tls-test-pw@{host}:{self.tls_port}/"


@contextmanager
def _tls_node(*, require_client_certificate: bool) -> Iterator[TlsNode]:
    """A private node with a TLS listener; it always verifies a client certificate that is
    offered, and with `require_client_certificate` refuses a client that offers none."""
    if not rabbitmq_server_available():
        missing("TLS tests need `rabbitmq-server` on PATH for a node of their own")
    base_dir = Path(tempfile.mkdtemp(prefix="hopline-tls-"))
    base_dir.chmod(0o755)
    node_dir = base_dir / "node"
    certs = node_dir / "tls"  # inside the node's dir: handed to the rabbitmq user with it
    certs.mkdir(parents=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    client = ca.issue_cert("hopline-client")
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(certs / "server.pem"))
    server.private_key_pem.write_to_path(str(certs / "server.key"))
    client_dir = base_dir / "client"
    client_dir.mkdir()
    client.cert_chain_pems[0].write_to_path(str(client_dir / "client.pem"))
    client.private_key_pem.write_to_path(str(client_dir / "client.key"))
    ca.cert_pem.write_to_path(str(client_dir / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(client_dir / "other-ca.pem"))
    tls_port = free_port()
    fail_if_no_peer_cert = "true" if require_client_certificate else "false"
    try:
        node = start_local_broker(
            node_dir,
            extra_config="\n".join(
                [
                    f"listeners.ssl.default = 127.0.0.1:{tls_port}",
                    f"ssl_options.cacertfile = {certs / 'ca.pem'}",
                    f"ssl_options.certfile = {certs / 'server.pem'}",
                    f"ssl_options.keyfile = {certs / 'server.key'}",
                    "ssl_options.verify = verify_peer",
                    f"ssl_options.fail_if_no_peer_cert = {fail_if_no_peer_cert}",
                ]
            ),
            avoid_ports=(tls_port,),
        )
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise
    try:
        node.ctl("change_password", "guest", "tls-test-pw")
        yield TlsNode(
            node,
            tls_port,
            client_dir / "ca.pem",
            client_dir / "client.pem",
            client_dir / "client.key",
            client_dir / "other-ca.pem",
        )
    finally:
        discard_local_broker(node)
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_node() -> Iterator[TlsNode]:
    """A node that accepts clients with or without a certificate of their own."""
    with _tls_node(require_client_certificate=False) as node:
        yield node


@pytest.fixture(scope="module")
def strict_tls_node() -> Iterator[TlsNode]:
    """A node that demands a client certificate (`ssl_options.fail_if_no_peer_cert = true`)."""
    with _tls_node(require_client_certificate=True) as node:
        yield node


def _registry(handled: list[Any]) -> Registry:
    registry = Registry("tls")

    @registry.handler("orders.created")
    async def created(payload: Any) -> None:
        handled.append(payload)

    return registry


async def test_the_pipeline_runs_over_tls_with_a_client_certificate(
    strict_tls_node: TlsNode,
) -> None:
    # Given a node that refuses any client without a certificate signed by its CA
    tls = {
        "tls_ca_file": strict_tls_node.ca_file,
        "tls_cert_file": strict_tls_node.client_cert_file,
        "tls_key_file": strict_tls_node.client_key_file,
    }
    handled: list[Any] = []
    url = strict_tls_node.url()
    # When a worker and the producer connect with the client certificate and a message is sent
    async with running_worker(consumer_settings(url, **tls), _registry(handled)):
        async with producer_client(producer_settings(url, **tls)) as client:
            response = await client.post(
                "/v1/messages", json={"type": "orders.created", "payload": {"over": "tls"}}
            )
            # Then the producer accepts it and the worker handles it, both over TLS
            assert response.status_code == 202, response.text
        await wait_until(lambda: handled == [{"over": "tls"}], timeout_s=10)


async def test_a_node_that_requires_client_certificates_refuses_a_client_without_one(
    strict_tls_node: TlsNode,
) -> None:
    # Given a node that demands a client certificate, and hopline's TLS context for settings
    # that trust the node's CA but carry no client certificate
    settings = HoplineSettings(
        amqp_url=SecretStr(strict_tls_node.url()), tls_ca_file=strict_tls_node.ca_file
    )

    # When hopline connects with them
    with pytest.raises(BrokerUnavailableError) as refused:
        connection = await connect(settings, name="test-tls-no-client-cert")
        await connection.close()

    # Then the node refused the handshake, and the error is one line that says what to set
    message = str(refused.value)
    assert "\n" not in message
    assert "HOPLINE_TLS_CERT_FILE" in message


async def test_a_ca_file_alone_is_enough_without_a_client_certificate(tls_node: TlsNode) -> None:
    settings = HoplineSettings(amqp_url=SecretStr(tls_node.url()), tls_ca_file=tls_node.ca_file)

    connection = await connect(settings, name="test-tls")

    await connection.close()


async def test_a_wrong_ca_stops_the_consumer_at_start_with_one_clear_line(
    tls_node: TlsNode,
) -> None:
    settings = consumer_settings(tls_node.url(), tls_ca_file=tls_node.other_ca_file)

    with pytest.raises(BrokerUnavailableError) as failed:
        await Worker(settings, _registry([])).start()

    message = str(failed.value)
    assert "\n" not in message
    assert "TLS certificate was rejected (self-signed certificate in certificate chain)" in message
    assert "HOPLINE_TLS_CA_FILE" in message
    assert "tls-test-pw" not in message


async def test_the_host_name_is_verified(tls_node: TlsNode) -> None:
    """The certificate names `localhost`; the same broker reached as 127.0.0.1 is refused."""
    settings = HoplineSettings(
        amqp_url=SecretStr(tls_node.url("127.0.0.1")), tls_ca_file=tls_node.ca_file
    )

    with pytest.raises(BrokerUnavailableError, match="TLS certificate was rejected"):
        await connect(settings, name="test-tls")


async def test_tls_files_with_a_plain_amqp_url_are_a_configuration_error(
    tls_node: TlsNode,
) -> None:
    settings = HoplineSettings(
        amqp_url=SecretStr(f"amqp://guest:guest@localhost:{tls_node.node.amqp_port}/"),
        tls_ca_file=tls_node.ca_file,
    )

    with pytest.raises(ConfigurationError, match="HOPLINE_TLS_CA_FILE set but"):
        await connect(settings, name="test-tls")
