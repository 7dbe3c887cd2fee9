"""common.copies: the retry and quarantine copies keep the message and say what happened."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from common import headers as h
from common.copies import DeliveryContext, failure_copy, retry_copy

SENT_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FAILED_AT = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)

BROKER_HEADERS = {
    "x-death": [{"count": 1, "queue": "hopline.retry.1s", "reason": "expired"}],
    "x-first-death-queue": "hopline.retry.1s",
    "x-first-death-reason": "expired",
    "x-first-death-exchange": "hopline.retry",
    "x-last-death-queue": "hopline.retry.1s",
    "x-last-death-reason": "expired",
    "x-last-death-exchange": "hopline.retry",
    "x-delivery-count": 2,
}


@dataclasses.dataclass(frozen=True)
class FakeIncoming:
    """The attributes of an aio-pika IncomingMessage that copies.py reads."""

    body: bytes = b'{"order_id": "o-1"}'
    headers: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: {"tenant": "acme", "x-custom": 1, **BROKER_HEADERS}
    )
    content_type: str | None = "application/json"
    content_encoding: str | None = None
    priority: int | None = 0
    correlation_id: str | None = "c-1"
    reply_to: str | None = "replies"
    message_id: str | None = "m-1"
    timestamp: datetime | None = SENT_AT
    type: str | None = "orders.created"
    app_id: str | None = "producer"
    user_id: str | None = "guest"


def _context(options: dict[str, Any]) -> DeliveryContext:
    """The copy's origin from the options that name it (taken out of `options`)."""
    names = [field.name for field in dataclasses.fields(DeliveryContext)]
    return DeliveryContext(**{name: options.pop(name) for name in names})


def retry(incoming: Any = None, **overrides: Any) -> aio_pika.Message:
    options: dict[str, Any] = {
        "attempt": 2,
        "origin_queue": "hopline.orders.high",
        "original_routing_key": "high.orders.created",
        "next_attempt": 3,
        "message_type": None,
        "message_id": None,
        "error_type": "ConnectionError",
        "error_message": "db down",
    }
    options |= overrides
    context = _context(options)
    return retry_copy(incoming or FakeIncoming(), context, **options)  # type: ignore[arg-type]


def failure(incoming: Any = None, **overrides: Any) -> aio_pika.Message:
    options: dict[str, Any] = {
        "origin_queue": "hopline.orders.high",
        "original_routing_key": "high.orders.created",
        "attempt": 5,
        "message_type": None,
        "message_id": None,
        "error_type": "ConnectionError",
        "error_message": "db down",
        "traceback": "Traceback (most recent call last):\n  ...\nConnectionError: db down\n",
        "reason": "gave up after 5 attempts: ConnectionError: db down",
        "consumer": "orders@host-1",
        "failed_at": FAILED_AT,
    }
    options |= overrides
    context = _context(options)
    return failure_copy(incoming or FakeIncoming(), context, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [retry, failure], ids=["retry", "failure"])
def test_a_copy_keeps_body_and_publisher_properties(make: Any) -> None:
    copy = make()

    assert copy.body == b'{"order_id": "o-1"}'
    assert copy.content_type == "application/json"
    assert copy.correlation_id == "c-1"
    assert copy.reply_to == "replies"
    assert copy.message_id == "m-1"
    assert copy.timestamp is not None
    assert copy.type == "orders.created"
    assert copy.app_id == "producer"
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert copy.headers["tenant"] == "acme"
    assert copy.headers["x-custom"] == 1


@pytest.mark.parametrize("make", [retry, failure], ids=["retry", "failure"])
def test_a_copy_drops_the_brokers_history(make: Any) -> None:
    copy = make()

    assert not set(BROKER_HEADERS) & set(copy.headers)


@pytest.mark.parametrize("make", [retry, failure], ids=["retry", "failure"])
def test_a_copy_does_not_claim_the_original_publishers_user_id(make: Any) -> None:
    assert make().user_id is None


@pytest.mark.parametrize("make", [retry, failure], ids=["retry", "failure"])
def test_a_copy_fills_in_a_derived_type_and_id(make: Any) -> None:
    # Given a bare foreign message without type or id
    incoming = FakeIncoming(type=None, message_id=None)

    # When the consumer copies it with the type and id it derived
    copy = make(incoming, message_type="orders.created", message_id="derived-id")

    assert copy.type == "orders.created"
    assert copy.message_id == "derived-id"


@pytest.mark.parametrize("make", [retry, failure], ids=["retry", "failure"])
def test_a_copy_of_a_message_without_headers_works(make: Any) -> None:
    copy = make(FakeIncoming(headers=None))

    assert copy.headers[h.ORIGIN_QUEUE] == "hopline.orders.high"


def test_the_retry_copy_says_where_to_return_and_which_attempt_comes_next() -> None:
    copy = retry()

    assert copy.headers[h.ATTEMPT] == 3
    assert copy.headers[h.ORIGIN_QUEUE] == "hopline.orders.high"
    assert copy.headers[h.ROUTING_KEY] == "high.orders.created"
    assert copy.headers[h.ERROR_TYPE] == "ConnectionError"
    assert copy.headers[h.ERROR_MESSAGE] == "db down"
    assert h.ERROR_TRACEBACK not in copy.headers
    assert h.read_attempt(copy.headers) == 3


def test_the_retry_copy_replaces_an_older_attempt_count() -> None:
    incoming = FakeIncoming(headers={h.ATTEMPT: 2, h.ERROR_TYPE: "Old"})

    copy = retry(incoming, next_attempt=3, error_type="New")

    assert copy.headers[h.ATTEMPT] == 3
    assert copy.headers[h.ERROR_TYPE] == "New"


def test_the_failure_copy_carries_everything_a_person_needs() -> None:
    copy = failure()

    assert {key: copy.headers[key] for key in copy.headers if key.startswith("x-hopline-")} == {
        h.ATTEMPT: 5,
        h.ORIGIN_QUEUE: "hopline.orders.high",
        h.ROUTING_KEY: "high.orders.created",
        h.ERROR_TYPE: "ConnectionError",
        h.ERROR_MESSAGE: "db down",
        h.ERROR_TRACEBACK: "Traceback (most recent call last):\n  ...\nConnectionError: db down\n",
        h.REASON: "gave up after 5 attempts: ConnectionError: db down",
        h.FAILED_AT: "2024-05-01T12:05:00+00:00",
        h.CONSUMER: "orders@host-1",
    }


def text_header(copy: aio_pika.Message, key: str) -> str:
    value = copy.headers[key]
    assert isinstance(value, str)
    return value


def test_the_failure_time_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)

    copy = failure(failed_at=None)

    failed_at = datetime.fromisoformat(text_header(copy, h.FAILED_AT))
    assert failed_at.tzinfo is not None
    assert before <= failed_at <= datetime.now(UTC)


def test_huge_error_texts_are_bounded() -> None:
    # Given an exception with an enormous message and traceback
    huge_message = "m" * 100_000
    huge_traceback = "frame\n" * 100_000 + "InnermostError: here"

    # When the failure copy is made
    copy = failure(error_message=huge_message, traceback=huge_traceback, reason=huge_message)
    retried = retry(error_message=huge_message)

    # Then every added text fits its bound, and the traceback keeps its innermost frame
    assert len(text_header(copy, h.ERROR_MESSAGE)) <= h.MAX_ERROR_MESSAGE_CHARS
    assert len(text_header(copy, h.REASON)) <= h.MAX_ERROR_MESSAGE_CHARS
    assert len(text_header(copy, h.ERROR_TRACEBACK)) <= h.MAX_TRACEBACK_CHARS
    assert text_header(copy, h.ERROR_TRACEBACK).endswith("InnermostError: here")
    assert len(text_header(retried, h.ERROR_MESSAGE)) <= h.MAX_ERROR_MESSAGE_CHARS
