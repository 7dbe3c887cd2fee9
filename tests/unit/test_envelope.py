"""common.envelope: what a delivery becomes, and what a published envelope looks like."""

from __future__ import annotations

import dataclasses
import gzip
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
import pytest

from common.envelope import (
    JSON_CONTENT_TYPE,
    Envelope,
    decode_delivery,
    new_envelope,
    original_routing_key,
    to_message,
)
from common.errors import HoplineError, UndecodableMessageError
from common.headers import ATTEMPT, ORIGIN_QUEUE, ROUTING_KEY

PRIORITIES = ("high", "normal", "low")
SENT_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class FakeIncoming:
    """The parts of an aio-pika IncomingMessage that decoding reads (IncomingLike)."""

    body: bytes = b'{"order_id": "o-1"}'
    content_type: str | None = JSON_CONTENT_TYPE
    content_encoding: str | None = None
    type: str | None = "orders.created"
    routing_key: str | None = "high.orders.created"
    headers: Any = None
    message_id: str | None = "m-1"
    correlation_id: str | None = None
    timestamp: datetime | None = None
    app_id: str | None = None


def decode(incoming: FakeIncoming, priority: str = "high") -> Envelope:
    return decode_delivery(incoming, priority=priority, priorities=PRIORITIES)


def refusal(incoming: FakeIncoming) -> str:
    with pytest.raises(UndecodableMessageError) as caught:
        decode(incoming)
    return caught.value.reason


def test_a_hopline_message_keeps_its_properties() -> None:
    # Given a message as the producer publishes it
    incoming = FakeIncoming(
        correlation_id="c-9",
        timestamp=SENT_AT,
        app_id="producer",
        headers={"tenant": "acme"},
    )

    # When it is decoded
    envelope = decode(incoming)

    # Then every property reaches the handler
    assert envelope == Envelope(
        message_id="m-1",
        message_type="orders.created",
        payload={"order_id": "o-1"},
        priority="high",
        correlation_id="c-9",
        headers={"tenant": "acme"},
        timestamp=SENT_AT,
        app_id="producer",
    )
    assert envelope.routing_key == "high.orders.created"


def test_a_bare_json_body_with_only_a_routing_key_is_decoded() -> None:
    # Given a foreign publisher that sends nothing but a routing key and a JSON body
    incoming = FakeIncoming(
        body=b"[1, 2, 3]",
        content_type=None,
        type=None,
        routing_key="low.billing.invoice_paid",
        headers=None,
        message_id=None,
    )

    # When it is decoded from the low-priority queue
    envelope = decode(incoming, priority="low")

    # Then the type comes from the routing key and the message gets an id
    assert envelope.message_type == "billing.invoice_paid"
    assert envelope.payload == [1, 2, 3]
    assert envelope.priority == "low"
    assert envelope.headers == {}
    assert uuid.UUID(envelope.message_id)


def test_two_messages_without_id_get_different_ids() -> None:
    incoming = FakeIncoming(message_id=None)

    assert decode(incoming).message_id != decode(incoming).message_id


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        " application/json ;charset=UTF-8",
        "application/cloudevents+json",
        "application/vnd.acme.order+json; version=2",
    ],
)
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    assert decode(FakeIncoming(content_type=content_type)).payload == {"order_id": "o-1"}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "application/xml", "application/jsonx"],
)
def test_other_content_types_are_refused_with_the_type_named(content_type: str) -> None:
    reason = refusal(FakeIncoming(content_type=content_type))

    assert repr(content_type) in reason
    assert "not JSON" in reason


@pytest.mark.parametrize("content_encoding", [None, "", "identity", "utf-8", "utf8", "UTF-8"])
def test_encodings_that_leave_the_bytes_alone_are_accepted(content_encoding: str | None) -> None:
    assert decode(FakeIncoming(content_encoding=content_encoding)).payload == {"order_id": "o-1"}


@pytest.mark.parametrize("content_encoding", ["UTF8", "Identity"])
def test_plain_encodings_are_accepted_in_any_case(content_encoding: str) -> None:
    assert decode(FakeIncoming(content_encoding=content_encoding)).payload == {"order_id": "o-1"}


def test_a_gzip_body_is_refused_not_guessed_at() -> None:
    # Given a compressed body, which hopline does not unpack
    incoming = FakeIncoming(body=gzip.compress(b'{"a": 1}'), content_encoding="gzip")

    # Then the reason names the encoding and the fix
    reason = refusal(incoming)
    assert "'gzip'" in reason
    assert "uncompressed" in reason


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty body"),
        (b"not json", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b'{"a": 1} trailing', "not valid JSON"),
        (b'"\xff\xfe"', "not valid JSON"),  # invalid UTF-8
        (b"[" * 2000 + b"]" * 2000, "not valid JSON"),  # deeper than orjson allows
    ],
)
def test_bodies_that_are_not_json_are_refused_with_the_reason(body: bytes, fragment: str) -> None:
    assert fragment in refusal(FakeIncoming(body=body))


def test_json_scalars_are_valid_payloads() -> None:
    assert decode(FakeIncoming(body=b"null")).payload is None
    assert decode(FakeIncoming(body=b"42")).payload == 42
    assert decode(FakeIncoming(body=b'"text"')).payload == "text"


def test_undecodable_error_is_a_hopline_error_carrying_its_reason() -> None:
    error = UndecodableMessageError("why")

    assert isinstance(error, HoplineError)
    assert error.reason == "why"
    assert str(error) == "why"


@pytest.mark.parametrize(
    ("message_type", "routing_key"),
    [
        ("Orders.Created", "high.orders.created"),
        ("orders created", "high.orders.created"),
        ("orders..created", "high.orders.created"),
    ],
)
def test_an_invalid_type_property_is_refused(message_type: str, routing_key: str) -> None:
    reason = refusal(FakeIncoming(type=message_type, routing_key=routing_key))

    assert repr(message_type) in reason


@pytest.mark.parametrize(
    ("routing_key", "fragment"),
    [
        ("orders", "no message type"),
        ("urgent.orders.created", "unknown priority 'urgent'"),
        ("high.Orders", "invalid message type"),
        (None, "no message type"),
    ],
)
def test_without_a_type_property_a_bad_routing_key_is_the_reason(
    routing_key: str | None, fragment: str
) -> None:
    reason = refusal(FakeIncoming(type=None, routing_key=routing_key))

    assert reason.startswith("no type property, and ")
    assert fragment in reason


def test_reserved_hopline_headers_are_not_handed_to_the_handler() -> None:
    # Given a retried message carrying our bookkeeping next to the publisher's headers
    incoming = FakeIncoming(
        headers={
            ATTEMPT: 3,
            ORIGIN_QUEUE: "hopline.orders.high",
            ROUTING_KEY: "high.orders.created",
            "x-hopline-error-type": "ValueError",
            "tenant": "acme",
            "x-custom": "kept",
        }
    )

    # Then the handler sees only the publisher's headers
    assert decode(incoming).headers == {"tenant": "acme", "x-custom": "kept"}


@pytest.mark.parametrize(
    "original", ["normal.payments.charge", b"normal.payments.charge"], ids=["str", "bytes"]
)
def test_after_a_retry_the_type_comes_from_the_original_routing_key(original: Any) -> None:
    # Given a retried bare message, now delivered under the retry tier's routing key
    incoming = FakeIncoming(
        type=None,
        routing_key="hopline.retry.5s",
        headers={ROUTING_KEY: original, ATTEMPT: 2},
    )

    # When it is decoded, the type is the one it was first published with
    envelope = decode(incoming, priority="normal")

    assert envelope.message_type == "payments.charge"
    assert envelope.routing_key == "normal.payments.charge"


@pytest.mark.parametrize(
    ("headers", "routing_key", "expected"),
    [
        (None, "high.a", "high.a"),
        ({}, "high.a", "high.a"),
        ({ROUTING_KEY: "low.b"}, "hopline.retry.1s", "low.b"),
        ({ROUTING_KEY: b"low.b"}, "hopline.retry.1s", "low.b"),
        ({ROUTING_KEY: ""}, "high.a", "high.a"),
        ({ROUTING_KEY: 7}, "high.a", "high.a"),
        (None, None, ""),
    ],
)
def test_original_routing_key(headers: Any, routing_key: str | None, expected: str) -> None:
    incoming = FakeIncoming(headers=headers, routing_key=routing_key)

    assert original_routing_key(incoming) == expected


def test_new_envelope_fills_id_and_timestamp() -> None:
    before = datetime.now(UTC)

    envelope = new_envelope("orders.created", {"a": 1}, "high", app_id="producer")

    assert uuid.UUID(envelope.message_id)
    assert envelope.timestamp is not None
    assert before <= envelope.timestamp <= datetime.now(UTC)
    assert envelope.app_id == "producer"
    assert envelope.headers == {}


def test_new_envelope_keeps_a_given_message_id_and_copies_headers() -> None:
    given_headers = {"tenant": "acme"}

    envelope = new_envelope(
        "a.b", 1, "low", app_id="x", message_id="fixed", headers=given_headers, correlation_id="c"
    )
    given_headers["tenant"] = "changed"

    assert envelope.message_id == "fixed"
    assert envelope.correlation_id == "c"
    assert envelope.headers == {"tenant": "acme"}


def test_to_message_is_persistent_json_with_the_envelope_properties() -> None:
    # Given an envelope as the producer builds it
    envelope = new_envelope(
        "orders.created",
        {"order_id": "o-1", "amount_cents": 250},
        "high",
        app_id="producer",
        correlation_id="c-1",
        headers={"tenant": "acme"},
        message_id="m-1",
    )

    # When it becomes an AMQP message
    message = to_message(envelope)

    # Then it survives a broker restart and says what it is
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.message_id == "m-1"
    assert message.correlation_id == "c-1"
    assert message.type == "orders.created"
    assert message.app_id == "producer"
    assert message.headers == {"tenant": "acme"}
    assert message.timestamp is not None
    assert orjson.loads(message.body) == {"order_id": "o-1", "amount_cents": 250}


def test_to_message_uses_a_pre_encoded_body_as_is() -> None:
    envelope = new_envelope("a.b", {"ignored": True}, "low", app_id="x")

    assert to_message(envelope, body=b'{"pre": 1}').body == b'{"pre": 1}'


def test_what_to_message_publishes_decodes_back_to_the_same_envelope() -> None:
    # Given a published envelope
    sent = new_envelope("orders.created", {"n": [1, 2]}, "normal", app_id="p", correlation_id="c")
    message = to_message(sent)

    # When a consumer receives exactly those properties
    received = decode(
        FakeIncoming(
            body=message.body,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            type=message.type,
            routing_key=sent.routing_key,
            headers=message.headers,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            timestamp=sent.timestamp,
            app_id=message.app_id,
        ),
        priority="normal",
    )

    # Then it is the same envelope
    assert received == sent
