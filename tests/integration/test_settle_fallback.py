"""The last guard behind "nothing is silently dropped", on a real broker: a copy the broker
refuses. A refused retry copy becomes a quarantine copy that says why; a refused quarantine
copy makes the consumer reject the message, the broker dead-letters it to quarantine, and
the reason shown there is the broker's (rejected), not an earlier attempt's error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from common import headers as h
from common.copies import DeliveryContext
from common.delays import delay_exchanges
from common.names import Names
from common.quarantine.failed import FailedMessage, failed_from_delivery
from consumer import Registry, RetryableError
from consumer.acks import AckBatcher
from consumer.delivery import Delivery
from consumer.policy import Outcome, OutcomeKind, Quarantine, Retry
from consumer.settler import Settled, Settler
from tests.support.pipeline import (
    consumer_settings,
    drain,
    publish_raw,
    queue_depth,
    running_worker,
)
from tests.support.wait import wait_until

NAMES = Names()
SERVICE = "fallback"
WORK_QUEUE = NAMES.work_queue(SERVICE, "normal")
QUARANTINE = NAMES.quarantine(SERVICE)


def _registry(calls: list[int]) -> Registry:
    registry = Registry(SERVICE)

    @registry.handler("jobs.flaky", max_attempts=3)
    async def flaky(payload: Any) -> None:
        calls.append(payload["n"])
        raise RetryableError("the service behind it is down")

    return registry


async def _publish(amqp_url: str, n: int, headers: dict[str, Any] | None = None) -> None:
    await publish_raw(
        amqp_url,
        NAMES.ingress,
        "normal.jobs.flaky",
        aio_pika.Message(
            f'{{"n": {n}}}'.encode(), message_id=f"m-{n}", headers=headers or {}, delivery_mode=2
        ),
    )


async def test_a_refused_retry_copy_is_quarantined_with_that_reason(amqp_url: str) -> None:
    calls: list[int] = []
    settings = consumer_settings(amqp_url)
    async with running_worker(settings, _registry(calls)):
        # Given the 1 s delay level's exchange is gone (deleted by hand), so the broker
        # refuses every retry copy
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(NAMES.delay_level(0))
        # When a handler fails transiently on its first attempt
        await _publish(amqp_url, 1)
        await wait_until(
            lambda: queue_depth(amqp_url, QUARANTINE), timeout_s=15, message="not quarantined"
        )
    # Then it is in quarantine, saying its retry copy was refused, not lost or looping
    [message] = await drain(amqp_url, QUARANTINE)
    failed = failed_from_delivery(message)
    assert calls == [1]
    assert failed.reason.startswith("retry_not_confirmed: the copy for a 1 s delay"), failed.reason
    assert failed.error_type == "RetryableError"
    assert failed.attempts == 1
    assert await queue_depth(amqp_url, WORK_QUEUE) == 0


@asynccontextmanager
async def _refusing_settler(amqp_url: str) -> AsyncIterator[tuple[Settler, Delivery]]:
    """A settler whose delay and quarantine exchanges route nowhere (every copy comes back as
    unroutable), and the first message of the work queue, taken for it."""
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        nowhere = Names(prefix="nowhere")
        for exchange in (*delay_exchanges(nowhere), nowhere.dlx):
            await publish_channel.declare_exchange(exchange, "direct", auto_delete=True)
        acks = AckBatcher()
        settler = Settler(
            publish_channel,
            nowhere,
            service=SERVICE,
            consumer_name="test",
            publish_timeout_s=5,
            acks=acks,
        )
        await settler.open()
        underlay = await (await connection.channel()).get_underlay_channel()
        raw: DeliveredMessage = await underlay.basic_get(WORK_QUEUE)
        assert isinstance(raw.delivery, Basic.GetOk), "the work queue was empty"
        try:
            yield settler, Delivery(raw, WORK_QUEUE, "normal", 1)
        finally:
            await acks.close()


async def _declare_queues(amqp_url: str) -> None:
    async with running_worker(consumer_settings(amqp_url, consume_priorities=[]), _registry([])):
        pass


async def _the_quarantined_one(amqp_url: str) -> FailedMessage:
    await wait_until(
        lambda: queue_depth(amqp_url, QUARANTINE), timeout_s=15, message="not dead-lettered"
    )
    [message] = await drain(amqp_url, QUARANTINE)
    assert await queue_depth(amqp_url, WORK_QUEUE) == 0
    return failed_from_delivery(message)


async def test_when_no_copy_is_confirmed_the_broker_quarantines_it_with_the_true_reason(
    amqp_url: str,
) -> None:
    # Given the service's queues, and a message that already failed once (headers of attempt 1)
    await _declare_queues(amqp_url)
    earlier = {
        h.ATTEMPT: 2,
        h.ORIGIN_QUEUE: WORK_QUEUE,
        h.ERROR_TYPE: "RetryableError",
        h.ERROR_MESSAGE: "transient failure on attempt 1",
    }
    await _publish(amqp_url, 2, earlier)
    async with _refusing_settler(amqp_url) as (settler, delivery):
        context = DeliveryContext(WORK_QUEUE, "normal.jobs.flaky", 2, "jobs.flaky", "m-2")
        outcome = Outcome(OutcomeKind.RETRYABLE, "RetryableError", "down again on attempt 2")

        # When its retry copy is refused, and the quarantine copy made instead is refused too
        settled = await settler.retry(delivery, Retry(0.2, 3), context, outcome)

    # Then the consumer rejected it, one message, and the broker dead-lettered it ...
    assert settled is Settled.REJECTED
    failed = await _the_quarantined_one(amqp_url)
    # ... with the broker's reason, not the earlier attempt's error as if the handler failed
    assert failed.error_type == "RejectedAfterCopyFailed"
    assert failed.reason.startswith("rejected: the consumer could not get a retry or quarantine")
    assert "the attempt before failed with RetryableError" in failed.error_message
    assert failed.attempts == 2


async def test_a_quarantine_decision_with_the_copy_refused_is_rejected_not_acked(
    amqp_url: str,
) -> None:
    # Given a message in the work queue and a settler whose quarantine copies route nowhere
    await _declare_queues(amqp_url)
    await _publish(amqp_url, 3)
    async with _refusing_settler(amqp_url) as (settler, delivery):
        context = DeliveryContext(WORK_QUEUE, "normal.jobs.flaky", 1, "jobs.flaky", "m-3")
        outcome = Outcome(OutcomeKind.PERMANENT, "PermanentError", "no such account")
        # When the handler's permanent failure cannot be copied to quarantine
        settled = await settler.quarantine(delivery, Quarantine("permanent"), context, outcome)
    # Then it was rejected (never acked before it is safe) and reached quarantine anyway
    assert settled is Settled.REJECTED
    assert (await _the_quarantined_one(amqp_url)).error_type == "RejectedAfterCopyFailed"
