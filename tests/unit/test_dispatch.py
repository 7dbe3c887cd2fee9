"""consumer.dispatch.run_handler: every way a handler can end, as an Outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, Field

from common.envelope import Envelope, new_envelope
from consumer.deadlines import Deadlines
from consumer.dispatch import run_handler
from consumer.errors import PermanentError, RetryableError
from consumer.policy import OutcomeKind
from consumer.registry import HandlerSpec, Registry

ENVELOPE = new_envelope(
    "orders.created", {"order_id": "o-1", "amount_cents": 5}, "high", app_id="t"
)


class Order(BaseModel):
    order_id: str = Field(min_length=1)
    amount_cents: int = Field(ge=0)


def spec_for(
    func: Any, *, timeout: float = 5.0, model: type[BaseModel] | None = None
) -> HandlerSpec:
    registry = Registry("orders")
    registry.handler("orders.created", timeout=timeout, model=model)(func)
    spec = registry.find("orders.created")
    assert spec is not None
    return spec


async def run(func: Any, envelope: Envelope = ENVELOPE, **options: Any) -> Any:
    deadlines = Deadlines()
    try:
        return await run_handler(spec_for(func, **options), envelope, deadlines)
    finally:
        await deadlines.close()


async def test_a_handler_that_returns_succeeds() -> None:
    received: list[Any] = []

    async def handler(payload: Any) -> None:
        received.append(payload)

    outcome = await run(handler)

    assert outcome.ok
    assert outcome.kind is OutcomeKind.SUCCESS
    assert received == [{"order_id": "o-1", "amount_cents": 5}]


async def test_a_handler_taking_two_arguments_gets_the_envelope() -> None:
    received: list[Any] = []

    async def handler(payload: Any, envelope: Envelope) -> None:
        received.append(envelope)

    assert (await run(handler)).ok
    assert received == [ENVELOPE]


async def test_a_blocking_handler_succeeds_too() -> None:
    def handler(payload: Any) -> None:
        assert payload["order_id"] == "o-1"

    assert (await run(handler)).ok


class Flaky(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "kind", "error_type", "error_message"),
    [
        (RetryableError("db down"), OutcomeKind.RETRYABLE, "RetryableError", "db down"),
        (ValueError("bad value"), OutcomeKind.RETRYABLE, "ValueError", "bad value"),
        (Flaky(), OutcomeKind.RETRYABLE, "Flaky", "Flaky()"),
        (KeyError("k"), OutcomeKind.RETRYABLE, "KeyError", "'k'"),
        (
            PermanentError("no such customer"),
            OutcomeKind.PERMANENT,
            "PermanentError",
            "no such customer",
        ),
    ],
)
async def test_a_raised_error_becomes_its_outcome(
    error: Exception, kind: OutcomeKind, error_type: str, error_message: str
) -> None:
    async def handler(payload: Any) -> None:
        raise error

    outcome = await run(handler)

    assert outcome.kind is kind
    assert outcome.error_type == error_type
    assert outcome.error_message == error_message
    assert outcome.traceback.startswith("Traceback (most recent call last):")
    assert "in handler" in outcome.traceback
    assert error_type in outcome.traceback


async def test_subclasses_of_permanent_error_are_permanent() -> None:
    class CustomerGone(PermanentError):
        pass

    async def handler(payload: Any) -> None:
        raise CustomerGone("deleted")

    outcome = await run(handler)

    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error_type.endswith("CustomerGone")


async def test_a_handler_past_its_timeout_is_a_timeout() -> None:
    # Given a handler that sleeps past its 0.05 s timeout
    async def handler(payload: Any) -> None:
        await asyncio.sleep(5)

    # When it runs
    outcome = await run(handler, timeout=0.05)

    # Then it is cut off and reported as a timeout naming the limit
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert outcome.error_type == "HandlerTimeout"
    assert "did not finish within 0.05 s" in outcome.error_message
    assert "handler" in outcome.error_message


async def test_a_handler_raising_its_own_timeout_error_is_retryable_not_a_timeout() -> None:
    # Given a handler whose call to a dependency timed out, well within its own limit
    async def handler(payload: Any) -> None:
        raise TimeoutError("upstream took too long")

    outcome = await run(handler, timeout=5)

    assert outcome.kind is OutcomeKind.RETRYABLE
    assert outcome.error_type == "TimeoutError"
    assert outcome.error_message == "upstream took too long"


async def test_a_valid_payload_arrives_as_the_model() -> None:
    received: list[Any] = []

    async def handler(payload: Order) -> None:
        received.append(payload)

    outcome = await run(handler, model=Order)

    assert outcome.ok
    assert received == [Order(order_id="o-1", amount_cents=5)]


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"order_id": "", "amount_cents": -1}, ["order_id", "amount_cents"]),
        ({"amount_cents": "lots"}, ["order_id", "amount_cents"]),
        ([1, 2], ["(root)"]),
    ],
)
async def test_an_invalid_payload_is_reported_with_its_fields(
    payload: Any, fields: list[str]
) -> None:
    # Given a payload the handler's model rejects
    called: list[Any] = []

    async def handler(payload: Order) -> None:
        called.append(payload)

    envelope = new_envelope("orders.created", payload, "high", app_id="t")

    # When it runs
    outcome = await run(handler, envelope, model=Order)

    # Then the handler is not called and the outcome names the fields
    assert called == []
    assert outcome.kind is OutcomeKind.INVALID_PAYLOAD
    assert outcome.error_type == "ValidationError"
    assert outcome.error_message.startswith("payload does not match Order: ")
    for field in fields:
        assert f"{field}: " in outcome.error_message


async def test_cancellation_is_not_swallowed() -> None:
    started = asyncio.Event()

    async def handler(payload: Any) -> None:
        started.set()
        await asyncio.sleep(5)

    task = asyncio.create_task(run(handler))
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_handler_that_swallows_the_cut_off_and_finishes_late_is_a_timeout() -> None:
    # Given a handler that catches the cancellation at its limit and carries on
    async def handler(payload: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)

    outcome = await run(handler, timeout=0.05)

    assert outcome.kind is OutcomeKind.TIMEOUT


async def test_after_a_timeout_the_task_goes_on_undisturbed() -> None:
    # Given a task whose handler was cut off at its limit
    async def handler(payload: Any) -> None:
        await asyncio.sleep(5)

    assert (await run(handler, timeout=0.05)).kind is OutcomeKind.TIMEOUT

    # Then the same task can still wait (nothing left pending against it) and is not cancelling
    await asyncio.sleep(0.1)
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_a_fast_handler_is_never_cut_off_after_it_returned() -> None:
    deadlines = Deadlines(resolution_s=0.01)
    spec = spec_for(lambda payload: None, timeout=0.02)
    try:
        for _ in range(20):
            assert (await run_handler(spec, ENVELOPE, deadlines)).ok
            await asyncio.sleep(0.005)
    finally:
        await deadlines.close()


async def test_an_error_text_with_a_secret_is_masked_before_it_is_stored() -> None:
    async def handler(payload: Any) -> None:
        raise ConnectionError("cannot reach postgresql://app:Pa55word@db/app (Bearer hpl_k)")

    outcome = await run(handler)
    # What goes into the quarantine headers, the admin page and archives
    for text in (outcome.error_message, outcome.traceback):
        assert "Pa55word" not in text and "hpl_k" not in text
    assert "postgresql://app:***@db/app" in outcome.error_message
