"""Least privilege on a real node: the definitions file's users run the pipeline, and each
role is refused, with one clear error, outside its rights.

The node is private (users and permissions are node-wide state) and shared by this module's
tests; it imports the file exactly as an operator would, with `rabbitmqctl import_definitions`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused
from pydantic import SecretStr
from typer.testing import CliRunner

from common.connection import AccessRefusedError, access_refused_error, connect
from common.settings import HoplineSettings
from consumer import PermanentError, Registry
from consumer.cli import app
from deploy.local.broker import (
    LocalBroker,
    discard_local_broker,
    rabbitmq_server_available,
    start_local_broker,
)
from tests.support.needs import missing
from tests.support.pipeline import (
    FAST_RETRY_DELAYS_S,
    consumer_settings,
    drain,
    producer_client,
    producer_settings,
    queue_depth,
    running_worker,
)
from tests.support.wait import wait_until

VHOST = "hopline-secured"
ADMIN_TOKEN = "admin-token-of-the-secured-node"
PASSWORDS = {
    "HOPLINE_PRODUCER_PASSWORD": "producer-Secret-1",
    "HOPLINE_CONSUMER_DEMO_PASSWORD": "consumer-Secret-2",
    "HOPLINE_OPERATOR_PASSWORD": "operator-Secret-3",
}


@dataclass(frozen=True)
class SecuredNode:
    node: LocalBroker
    definitions: Path

    def url(self, role: str) -> str:
        password = PASSWORDS[f"HOPLINE_{role.upper().replace('-', '_')}_PASSWORD"]
        return (
            f"amqp://hopline-{role}:{quote(password, safe='')}@127.0.0.1:"
            f"{self.node.amqp_port}/{quote(VHOST, safe='')}"
        )

    def import_definitions(self) -> None:
        self.node.ctl("import_definitions", str(self.definitions))

    def snapshot(self) -> dict[str, Any]:
        """Everything the import may touch, as the node reports it."""
        exported: dict[str, Any] = json.loads(self.node.ctl("export_definitions", "-"))
        exported.pop("rabbit_version", None)
        exported.pop("rabbitmq_version", None)
        return exported


def _export(base_dir: Path) -> Path:
    """`hopline topology export --users` as an operator runs it, passwords from the env."""
    out = base_dir / "definitions.json"
    env = {
        **PASSWORDS,
        "HOPLINE_RETRY_DELAYS_S": ",".join(str(d) for d in FAST_RETRY_DELAYS_S),
    }
    result = CliRunner().invoke(
        app,
        [
            "topology",
            "export",
            "--users",
            f"--vhost={VHOST}",
            "--handlers=consumer.examples:registry",
            "--broker-version=3.10",
            f"--out={out}",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    for password in PASSWORDS.values():
        assert password not in out.read_text() and password not in result.output
    out.chmod(0o644)  # rabbitmqctl runs as the rabbitmq user
    return out


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredNode]:
    if not rabbitmq_server_available():
        missing("least-privilege tests need `rabbitmq-server` on PATH for a node of their own")
    base_dir = Path(tempfile.mkdtemp(prefix="hopline-secured-"))
    base_dir.chmod(0o755)
    node = start_local_broker(base_dir / "node")
    try:
        secured = SecuredNode(node, _export(base_dir))
        secured.import_definitions()
        yield secured
    finally:
        discard_local_broker(node)
        shutil.rmtree(base_dir, ignore_errors=True)


def _demo_registry(handled: list[Any]) -> Registry:
    registry = Registry("demo")

    @registry.handler("orders.created")
    async def created(payload: Any) -> None:
        handled.append(payload)

    @registry.handler("reports.render", max_attempts=2)
    async def render(payload: Any) -> None:
        raise RuntimeError("renderer down")

    @registry.handler("payments.charge")
    async def charge(payload: Any) -> None:
        raise PermanentError("card declined")

    return registry


async def test_the_pipeline_runs_with_one_least_privilege_user_per_role(
    secured: SecuredNode,
) -> None:
    """Given the imported definitions, when the producer, a consumer and the operator use
    their own users, then messages are handled, retried and quarantined as usual."""
    handled: list[Any] = []
    consumer_url, producer_url = secured.url("consumer-demo"), secured.url("producer")
    async with running_worker(consumer_settings(consumer_url), _demo_registry(handled)):
        async with producer_client(producer_settings(producer_url)) as client:
            for message_type in ("orders.created", "reports.render", "payments.charge"):
                response = await client.post(
                    "/v1/messages",
                    json={"type": message_type, "payload": {"n": 1}, "priority": "high"},
                )
                assert response.status_code == 202, response.text
        await wait_until(lambda: handled == [{"n": 1}], timeout_s=10)

        async def quarantined() -> bool:
            return await queue_depth(consumer_url, "hopline.demo.quarantine") == 2

        await wait_until(quarantined, timeout_s=15, message="retry then quarantine")

        # The admin API, as its own process would run (HOPLINE_SERVE=admin, the operator's
        # user), lists them and replays one: its rights are enough, it declares nothing.
        admin = producer_settings(
            secured.url("operator"),
            serve="admin",
            admin_token=SecretStr(ADMIN_TOKEN),
            management_url=secured.node.management_url,
        )
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with producer_client(admin) as client:
            listed = await client.get(
                "/v1/admin/quarantine/messages", params={"service": "demo"}, headers=auth
            )
            assert listed.status_code == 200, listed.text
            assert sorted(m["type"] for m in listed.json()) == ["payments.charge", "reports.render"]
            groups = await client.get("/v1/admin/quarantine/groups", headers=auth)
            assert groups.status_code == 200, groups.text
            charge = next(m for m in listed.json() if m["type"] == "payments.charge")
            replayed = await client.post(
                "/v1/admin/quarantine/replay",
                json={"ids": [charge["id"]], "service": ["demo"]},
                headers=auth,
            )
            assert replayed.status_code == 200 and replayed.json()["moved"] == 1, replayed.text
        await wait_until(quarantined, timeout_s=15, message="the replay failed again")

    # The operator takes the failed messages off quarantine.
    taken = await drain(secured.url("operator"), "hopline.demo.quarantine")
    assert sorted(m.type or "" for m in taken) == ["payments.charge", "reports.render"]


async def _publish(url: str, exchange: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(b"{}"), "high.orders.created")
    finally:
        await connection.close()


async def _consume(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        await source.get(fail=False)
    finally:
        await connection.close()


async def _declare(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "role, action, resource",
    [
        ("producer", _publish, "hopline.dlx"),
        ("producer", _publish, "hopline.retry"),
        ("producer", _consume, "hopline.demo.quarantine"),
        ("producer", _consume, "hopline.demo.high"),
        ("consumer-demo", _publish, "hopline.ingress"),
        ("consumer-demo", _consume, "hopline.demo.quarantine"),
        ("consumer-demo", _declare, "hopline.billing.high"),
        ("operator", _consume, "hopline.demo.high"),
        ("operator", _publish, "hopline.dlx"),
        ("operator", _declare, "hopline.demo.quarantine"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
async def test_each_role_is_refused_outside_its_rights_with_one_clear_error(
    secured: SecuredNode, role: str, action: Any, resource: str
) -> None:
    with pytest.raises(ChannelAccessRefused) as refused:
        await action(secured.url(role), resource)

    error = access_refused_error(refused.value)

    message = str(error)
    assert isinstance(error, AccessRefusedError)
    assert "\n" not in message
    assert f"user 'hopline-{role}'" in message and repr(resource) in message
    assert "ACCESS_REFUSED" in message
    assert not any(password in message for password in PASSWORDS.values())


async def test_a_wrong_password_or_a_foreign_vhost_fails_at_connect_with_one_line(
    secured: SecuredNode,
) -> None:
    wrong_password = secured.url("producer").replace(
        quote(PASSWORDS["HOPLINE_PRODUCER_PASSWORD"], safe=""), "not-the-password"
    )
    foreign_vhost = secured.url("producer").rsplit("/", 1)[0] + "/"
    for url, expected in (
        (wrong_password, "refused the login of user 'hopline-producer'"),
        (foreign_vhost, "user 'hopline-producer' may not open vhost '/'"),
    ):
        with pytest.raises(AccessRefusedError) as refused:
            await connect(HoplineSettings(amqp_url=SecretStr(url)), name="test")
        message = str(refused.value)
        assert expected in message and "\n" not in message
        assert "not-the-password" not in message
        assert PASSWORDS["HOPLINE_PRODUCER_PASSWORD"] not in message


def test_importing_the_definitions_twice_changes_nothing(secured: SecuredNode) -> None:
    before = secured.snapshot()

    secured.import_definitions()

    after = secured.snapshot()
    assert after == before
    users = {user["name"] for user in after["users"]}
    assert {"hopline-producer", "hopline-consumer-demo", "hopline-operator"} <= users
