"""The demo service (`consumer/examples.py`) does what the README's walk-through says, on a
real broker: the README's demo cannot drift from the code."""

from __future__ import annotations

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from common.names import Names
from common.quarantine.failed import failed_from_delivery
from consumer.examples import registry
from deploy.local.run import DEMO_MESSAGES
from tests.support.pipeline import (
    consumer_settings,
    drain,
    producer_client,
    producer_settings,
    queue_depth,
    running_worker,
)
from tests.support.wait import wait_until

NAMES = Names()


async def test_the_demo_shows_every_path_a_message_can_take(amqp_url: str) -> None:
    quarantine = NAMES.quarantine("demo")
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with (
            running_worker(consumer_settings(amqp_url), registry),
            producer_client(producer_settings(amqp_url)) as client,
        ):
            # When make run's four demo messages and a type no service handles are posted
            for message in DEMO_MESSAGES:
                assert (await client.post("/v1/messages", json=message)).status_code == 202
            stray = {"type": "nobody.handles.this", "payload": {}}
            assert (await client.post("/v1/messages", json=stray)).status_code == 202

            async def two_quarantined() -> bool:
                return await queue_depth(amqp_url, quarantine) == 2

            await wait_until(two_quarantined, timeout_s=20, message="demo failures not there")
            await wait_until(
                lambda: any(e["event"] == "payment.charged" for e in logs),
                timeout_s=10,
                message="the payment was never charged",
            )
    events = [(e["event"], e.get("type"), e.get("attempt"), e.get("outcome")) for e in logs]
    # Then the order succeeded, the payment failed once and succeeded on its retry ...
    assert ("order.created", "orders.created", 1, None) in events
    assert ("message.handled", "payments.charge", 1, "retry") in events
    assert ("payment.charged", "payments.charge", 2, None) in events
    # ... the report and the invalid order are in quarantine, each with its reason ...
    reasons = sorted(failed_from_delivery(m).reason for m in await drain(amqp_url, quarantine))
    assert reasons[0].startswith("gave up after 3 attempts: RuntimeError: template 'monthly'")
    assert reasons[1].startswith("invalid_payload: ValidationError: payload does not match")
    # ... and a type no service handles was kept in hopline.unroutable, not taken by the demo
    assert await queue_depth(amqp_url, NAMES.unroutable) == 1
