"""consumer.testing.Harness: the demo service (`consumer/examples.py`) through the consumer's
own path, in memory: what a handler author's tests look like."""

from __future__ import annotations

import json

from consumer.examples import registry
from consumer.policy import OutcomeKind
from consumer.testing import Harness, Retry

harness = Harness(registry)
ORDER = {"order_id": "A-1", "amount_cents": 100}


async def test_a_valid_order_is_acked() -> None:
    assert (await harness.send("orders.created", ORDER)).acked


async def test_an_order_that_fails_its_model_is_quarantined_with_the_fields_named() -> None:
    result = await harness.send("orders.created", {"order_id": "", "amount_cents": -1})

    assert result.quarantine is not None
    assert result.outcome.kind is OutcomeKind.INVALID_PAYLOAD
    assert "order_id" in result.outcome.error_message
    assert "amount_cents" in result.outcome.error_message


async def test_a_payment_is_retried_after_its_first_attempt_and_acked_on_the_second() -> None:
    first = await harness.send("payments.charge", {"amount_cents": 5})
    second = await harness.send("payments.charge", {"amount_cents": 5}, attempt=2)

    assert first.retry == Retry(delay_s=1.0, next_attempt=2)
    assert first.outcome.error_type == "RetryableError"
    assert second.acked


async def test_a_report_is_given_up_on_its_last_attempt() -> None:
    result = await harness.send("reports.render", {"template": "monthly"}, attempt=3)

    assert result.quarantine is not None
    assert result.quarantine.reason.startswith("gave up after 3 attempts: RuntimeError:")


async def test_a_foreign_bare_json_body_takes_its_type_from_the_routing_key() -> None:
    result = await harness.send_raw(json.dumps(ORDER).encode(), routing_key="low.orders.created")

    assert result.acked


async def test_a_body_that_is_not_json_is_quarantined_as_undecodable() -> None:
    result = await harness.send_raw(b"<order/>", routing_key="high.orders.created")

    assert result.outcome.kind is OutcomeKind.UNDECODABLE
    assert result.quarantine is not None
    assert "not valid JSON" in result.quarantine.reason


async def test_a_type_without_a_handler_goes_to_the_fallback() -> None:
    assert (await harness.send("inventory.counted", {"sku": "x"})).acked
