"""common.quarantine.failed: what an operator reads of a quarantined message, and whose reason wins.

A consumer's own quarantine copy carries its reason in `x-hopline-*` headers and no `x-death`.
When the broker dead-lettered the message itself (delivery limit, the reject fallback), the
broker's `x-death` is the latest word, and the headers an earlier retry left are only context.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage

from common import headers as h
from common.quarantine.failed import FailedMessage, failed_from_delivery
from tests.support.incoming import incoming

DIED_AT = datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)
WORK_QUEUE = "hopline.orders.normal"


def _delivery(headers: dict[str, Any]) -> AbstractIncomingMessage:
    return incoming(headers)


def _death(reason: str, at: datetime = DIED_AT) -> dict[str, Any]:
    return {
        "x-death": [
            {
                "count": 1,
                "reason": reason,
                "queue": WORK_QUEUE,
                "time": at,
                "exchange": "hopline.requeue",
                "routing-keys": ["normal.orders.created"],
            }
        ]
    }


AN_EARLIER_RETRY = {
    h.ATTEMPT: 2,
    h.ORIGIN_QUEUE: WORK_QUEUE,
    h.ERROR_TYPE: "RetryableError",
    h.ERROR_MESSAGE: "transient failure on attempt 1",
}

CASES = [
    pytest.param(
        {
            **AN_EARLIER_RETRY,
            h.ERROR_TYPE: "PermanentError",
            h.ERROR_MESSAGE: "no such customer",
            h.REASON: "permanent: PermanentError: no such customer",
            h.FAILED_AT: "2026-11-29T12:00:04+00:00",
        },
        ("PermanentError", "permanent: PermanentError: no such customer", 2),
        id="the consumer quarantined it: its own reason",
    ),
    pytest.param(
        {**AN_EARLIER_RETRY, **_death("rejected")},
        ("RejectedAfterCopyFailed", "rejected: the consumer could not get a retry", 2),
        id="rejected after a copy failed: not the earlier retry's error",
    ),
    pytest.param(
        {"x-delivery-count": 5, **_death("delivery_limit")},
        ("DeliveryLimitExceeded", "delivery_limit: delivered 6 times without being settled", 1),
        id="crash loop of a first attempt: attempt 1, not null",
    ),
    pytest.param(
        {**AN_EARLIER_RETRY, **_death("delivery_limit")},
        ("DeliveryLimitExceeded", "delivery_limit: delivered too many times", 2),
        id="crash loop after a retry: the limit, not the retry's error",
    ),
    pytest.param(
        {
            h.ERROR_TYPE: "ValueError",
            h.REASON: "gave up after 5 attempts: ValueError: x",
            h.FAILED_AT: "2026-11-29T12:00:09+00:00",
            **_death("rejected", at=DIED_AT),
        },
        ("ValueError", "gave up after 5 attempts: ValueError: x", 1),
        id="headers newer than the broker's death: the headers win",
    ),
]


@pytest.mark.parametrize(("headers", "expected"), CASES)
def test_the_reason_shown_is_the_latest_one(
    headers: dict[str, Any], expected: tuple[str, str, int]
) -> None:
    error_type, reason_start, attempts = expected
    failed: FailedMessage = failed_from_delivery(_delivery(headers))
    assert failed.error_type == error_type
    assert failed.reason.startswith(reason_start), failed.reason
    assert failed.attempts == attempts


def test_a_broker_reason_keeps_the_earlier_error_as_context_only() -> None:
    failed = failed_from_delivery(_delivery({**AN_EARLIER_RETRY, **_death("rejected")}))
    assert failed.error_message.startswith("rejected: ")
    assert failed.error_message.endswith(
        "the attempt before failed with RetryableError: transient failure on attempt 1"
    )
    assert failed.failed_at == DIED_AT
    assert failed.origin_queue == WORK_QUEUE
