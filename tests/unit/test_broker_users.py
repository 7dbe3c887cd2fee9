"""Least-privilege users in the definitions export: rights per role, patterns, hashes."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from typer.testing import CliRunner

from common.definitions import (
    BrokerUser,
    Rights,
    declaration_rights,
    names_pattern,
    password_hash,
    role_permissions,
    to_definitions,
)
from common.settings import HoplineSettings
from common.topology import core_topology, service_topology
from consumer.cli import app

SETTINGS = HoplineSettings()
NAMES = SETTINGS.names


@pytest.fixture
def roles() -> dict[str, Rights]:
    services = [
        (service, service_topology(SETTINGS, service, ["#"])) for service in ("demo", "billing")
    ]
    return role_permissions(
        NAMES, priorities=SETTINGS.priorities, core=core_topology(SETTINGS), services=services
    )


def test_declaring_needs_configure_on_each_name_and_the_broker_s_extra_checks() -> None:
    rights = declaration_rights(core_topology(SETTINGS))

    level = NAMES.delay_level(3)
    assert NAMES.ingress in rights.configure and level in rights.configure
    # ingress names an alternate exchange: read on ingress, write on the alternate.
    assert NAMES.ingress in rights.read and NAMES.unroutable in rights.write
    # a level dead-letters to the next: read on the level, write on the next one.
    assert level in rights.read and NAMES.delay_level(2) in rights.write
    # the entry exchange is only ever a binding source (publishing to it is a role's right).
    assert NAMES.delay in rights.read and NAMES.delay not in rights.write
    # `due` hands retries on to requeue: write on requeue.
    assert NAMES.delay_due in rights.read and NAMES.requeue in rights.write


def test_the_producer_may_publish_only_to_ingress_and_delay_of_the_exchanges_it_does_not_declare(
    roles: dict[str, Rights],
) -> None:
    producer = roles["producer"]

    assert {NAMES.ingress, NAMES.delay, NAMES.events} <= producer.write
    assert NAMES.status in producer.read  # the status recorder runs in the producer
    assert {NAMES.status_unroutable, NAMES.status_dead_letters} <= producer.read  # its watch
    assert NAMES.dlx not in producer.write
    service_queues = {NAMES.work_queue("demo", "high"), NAMES.quarantine("demo")}
    assert not service_queues & (producer.read | producer.write | producer.configure)


def test_a_consumer_reads_only_its_own_work_queues(roles: dict[str, Rights]) -> None:
    demo = roles["consumer-demo"]

    assert {NAMES.work_queue("demo", p) for p in SETTINGS.priorities} <= demo.read
    assert {NAMES.delay, NAMES.requeue, NAMES.dlx, NAMES.events} <= demo.write
    assert NAMES.quarantine("demo") not in demo.read
    assert NAMES.status_dead_letters not in demo.read  # it only binds it, for the recorder
    assert NAMES.ingress not in demo.write
    assert not any("billing" in name for name in demo.read | demo.write | demo.configure)


def test_the_operator_handles_quarantine_and_declares_nothing(roles: dict[str, Rights]) -> None:
    operator = roles["operator"]

    assert operator.read == {
        NAMES.quarantine("demo"),
        NAMES.quarantine("billing"),
        NAMES.unroutable,
    }
    assert operator.write == {NAMES.requeue, NAMES.ingress, NAMES.events}
    assert operator.configure == frozenset()


def test_name_patterns_match_exactly_the_names() -> None:
    pattern = names_pattern(["hopline.ingress", "hopline.retry.1s"])

    assert re.fullmatch(pattern, "hopline.ingress")
    assert not re.search(pattern, "hopline.ingressX")
    assert not re.search(pattern, "hoplineXingress")
    assert not re.search(pattern, "x.hopline.retry.1s")
    assert names_pattern([]) == ""


def test_password_hash_is_rabbitmq_salted_sha256() -> None:
    salt = b"\x01\x02\x03\x04"

    encoded = password_hash("s3cret", salt=salt)

    raw = base64.b64decode(encoded)
    assert raw[:4] == salt and raw[4:] == hashlib.sha256(salt + b"s3cret").digest()
    assert password_hash("s3cret") != password_hash("s3cret")  # a fresh salt each time


def test_definitions_carry_users_and_permissions_but_no_password() -> None:
    user = BrokerUser("hopline-producer", password_hash("pw-123"), Rights(write=frozenset({"a"})))

    document = to_definitions(core_topology(SETTINGS), vhost="prod", users=[user])

    assert document["users"][0]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert document["permissions"] == [
        {"user": "hopline-producer", "vhost": "prod", "configure": "", "write": "^(a)$", "read": ""}
    ]
    assert "pw-123" not in json.dumps(document) and "pw-123" not in repr(user)
    assert "users" not in to_definitions(core_topology(SETTINGS))


def test_export_without_a_role_password_names_the_missing_variables() -> None:
    result = CliRunner().invoke(
        app,
        ["topology", "export", "--users", "--handlers=consumer.examples:registry"],
        env={"HOPLINE_PRODUCER_PASSWORD": "only-this-one"},
    )

    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    message = str(result.exception)
    assert "HOPLINE_CONSUMER_DEMO_PASSWORD" in message and "HOPLINE_OPERATOR_PASSWORD" in message
    assert "only-this-one" not in message
