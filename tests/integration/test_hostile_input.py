"""A catalogue of hostile and malformed messages from a foreign AMQP client (pika).

Each message must end processed, quarantined with a reason a person understands, or kept in
`hopline.unroutable`; and the consumer must keep working: a good message sent after it is
handled. The hostile message is published before the consumer starts (the topology is
declared first), so a per-message TTL has run out by the time anyone could consume it.
"""

from __future__ import annotations

import gzip
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from common.connection import broker_version, connect
from common.declare import declare_topology
from common.names import Names
from common.quarantine.failed import failed_from_delivery
from common.topology import service_topology
from consumer import Registry
from tests.support.foreign import publish_with_pika
from tests.support.pipeline import consumer_settings, drain, queue_depth, running_worker
from tests.support.wait import wait_until

NAMES = Names()
SERVICE = "hostile"
OK_KEY = "normal.jobs.ok"


@dataclass(frozen=True)
class Case:
    """A hostile message and where it must end: `processed`, `quarantine` or `unroutable`.

    For quarantine, `reason` must appear in what an operator sees (`hopline quarantine list`).
    """

    id: str
    body: bytes
    expect: str
    routing_key: str = OK_KEY
    reason: str = ""
    properties: dict[str, Any] = field(default_factory=dict)


def _nested(depth: int) -> bytes:
    return b'{"case": "nested", "v": ' + b"[" * depth + b"]" * depth + b"}"


_HUGE = 8 * 1024 * 1024  # 8 MiB: far above any sane message, far below RabbitMQ's limit

CASES = [
    Case("not-json", b"hello, world", "quarantine", reason="not valid JSON"),
    Case(
        "json-failing-the-model",
        b'{"order": 5}',
        "quarantine",
        routing_key="normal.orders.created",
        reason="payload does not match Order",
    ),
    Case(
        "unknown-type",
        b'{"case": "unknown"}',
        "quarantine",
        properties={"type": "ghosts.seen"},
        reason="no handler for type 'ghosts.seen'",
    ),
    Case(
        "invalid-type-property",
        b'{"case": "bad type"}',
        "quarantine",
        properties={"type": "Not A Type!"},
        reason="message type 'Not A Type!' is invalid",
    ),
    Case("no-content-type", b'{"case": "no content type"}', "processed"),
    Case(
        "wrong-content-type",
        b"<order/>",
        "quarantine",
        properties={"content_type": "application/xml"},
        reason="content type 'application/xml' is not JSON",
    ),
    Case(
        "json-with-charset",
        b'{"case": "charset"}',
        "processed",
        properties={"content_type": "application/json; charset=utf-8"},
    ),
    Case(
        "gzip-content-encoding",
        gzip.compress(b'{"case": "gzip"}'),
        "quarantine",
        properties={"content_type": "application/json", "content_encoding": "gzip"},
        reason="content encoding 'gzip' is not supported",
    ),
    Case("empty-body", b"", "quarantine", reason="empty body"),
    Case("huge-body", b'{"case": "huge", "blob": "' + b"x" * _HUGE + b'"}', "processed"),
    Case(
        "huge-body-failing-the-model",
        b'{"blob": "' + b"x" * _HUGE + b'"}',
        "quarantine",
        routing_key="normal.orders.created",
        reason="payload does not match Order",
    ),
    Case("nested-100", _nested(100), "processed"),
    Case("nested-100000", _nested(100_000), "quarantine", reason="not valid JSON"),
    Case("invalid-utf8", b'{"case": "\xff\xfe"}', "quarantine", reason="not valid JSON"),
    Case("utf8-bom", b'\xef\xbb\xbf{"case": "bom"}', "quarantine", reason="not valid JSON"),
    Case(
        "attempt-header-not-a-number",
        b'{"case": "attempt text"}',
        "processed",
        properties={"headers": {"x-hopline-attempt": "three"}},
    ),
    Case(
        "attempt-header-huge",
        b'{"case": "attempt huge"}',
        "processed",
        properties={"headers": {"x-hopline-attempt": 2**63 - 1}},
    ),
    Case(
        "attempt-header-negative-float-table",
        b'{"case": "attempt odd"}',
        "processed",
        properties={
            "headers": {
                "x-hopline-attempt": Decimal("-2.5"),
                "x-hopline-routing-key": 42,
                "x-hopline-queue": {"nested": [1, Decimal("2.5"), None, True, b"raw"]},
                "odd": [{"deep": {"deeper": [None]}}],
                "bytes": b"\x00\xff",
            }
        },
    ),
    Case(
        "attempt-header-huge-and-failing",
        b'{"case": "attempt huge failing", "fail": true}',
        "quarantine",
        properties={"headers": {"x-hopline-attempt": 2**63 - 1}},
        reason="gave up after 9223372036854775807 attempts",
    ),
    Case(
        "spoofed-original-routing-key",
        b'{"case": "spoofed key"}',
        "quarantine",
        properties={"headers": {"x-hopline-routing-key": "no-priority-here"}},
        reason="no type property",
    ),
    Case(
        "timestamp-out-of-range",
        b'{"case": "far future"}',
        "processed",
        properties={"timestamp": 2**64 - 1},
    ),
    Case("no-priority-segment", b'{"case": "no priority"}', "unroutable", routing_key="jobs.ok"),
    Case("unknown-priority", b'{"case": "urgent"}', "unroutable", routing_key="urgent.jobs.ok"),
    Case(
        "expired-per-message-ttl",
        b'{"case": "expired"}',
        "quarantine",
        properties={"expiration": "1"},
        reason="its TTL expired",
    ),
    Case(
        "old-x-death-history",
        b'{"case": "old x-death"}',
        "processed",
        properties={
            "headers": {
                "x-death": [
                    {
                        "count": 7,
                        "reason": "rejected",
                        "queue": "hopline.elsewhere.normal",
                        "exchange": "hopline.ingress",
                        "routing-keys": ["normal.jobs.ok"],
                    }
                ],
                "x-first-death-reason": "rejected",
                "x-first-death-queue": "hopline.elsewhere.normal",
            }
        },
    ),
]


class Order(BaseModel):
    order_id: str


def _registry(processed: list[str]) -> Registry:
    registry = Registry(SERVICE)

    @registry.handler("jobs.ok", max_attempts=2)
    async def ok(payload: Any) -> None:
        if isinstance(payload, dict) and payload.get("fail"):
            raise RuntimeError("the database is down")
        case = payload.get("case") if isinstance(payload, dict) else None
        processed.append(str(case))

    @registry.handler("orders.created", model=Order)
    async def created(payload: Order) -> None:
        processed.append(f"order {payload.order_id}")

    return registry


async def _declare(amqp_url: str, registry: Registry) -> None:
    settings = consumer_settings(amqp_url)
    connection = await connect(settings, name="hostile-input-test", robust=False)
    try:
        await declare_topology(
            connection,
            service_topology(settings, SERVICE, registry.type_patterns, broker_version(connection)),
        )
    finally:
        await connection.close()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_hostile_message_ends_with_a_reason_and_the_consumer_keeps_working(
    amqp_url: str, case: Case
) -> None:
    processed: list[str] = []
    registry = _registry(processed)
    await _declare(amqp_url, registry)
    # Given a hostile message waiting in the broker
    publish_with_pika(amqp_url, case.routing_key, case.body, **case.properties)
    async with running_worker(consumer_settings(amqp_url), registry):
        # When a good message follows it
        canary = f"canary-{uuid.uuid4()}"
        publish_with_pika(amqp_url, OK_KEY, b'{"case": "%s"}' % canary.encode())
        # Then the consumer still works
        await wait_until(lambda: canary in processed, timeout_s=20, message="canary not handled")
        # And the hostile message ended where it should, with a reason
        if case.expect == "processed":
            await wait_until(
                lambda: [p for p in processed if p != canary],
                timeout_s=10,
                message=f"{case.id} not processed",
            )
        elif case.expect == "quarantine":
            quarantine = NAMES.quarantine(SERVICE)
            await wait_until(
                lambda: queue_depth(amqp_url, quarantine),
                timeout_s=15,
                message=f"{case.id} not quarantined",
            )
            [message] = await drain(amqp_url, quarantine)
            failed = failed_from_delivery(message)
            assert message.body == case.body, "quarantine keeps the body as it was sent"
            shown = f"{failed.reason} | {failed.error_type}: {failed.error_message}"
            assert case.reason in shown, shown
        else:
            kept = await drain(amqp_url, NAMES.unroutable)
            assert [m.routing_key for m in kept] == [case.routing_key]
        # And nothing is left behind or spinning in the work queues
        for priority in ("high", "normal", "low"):
            assert await queue_depth(amqp_url, NAMES.work_queue(SERVICE, priority)) == 0
    assert processed.count(canary) == 1
