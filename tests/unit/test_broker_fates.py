"""common.status.broker_fates: which copies the broker made alone become which events.

The recorder's dead-letter copy sees every message that reaches `hopline.dlx`; only the
broker's delivery-limit deaths are news (a consumer announced its own quarantine copies and
its reject fallback), so only they become `quarantined`, and nothing is said twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage

from common import headers as h
from common.delays import delay_routing_key, scheduled_target
from common.events import Event
from common.status.broker_fates import NoMessageId, delivery_limit_event, unroutable_event
from tests.support.incoming import incoming

NOW = datetime(2026, 11, 29, 12, 0, 7, tzinfo=UTC)
PRIORITIES = ("high", "normal", "low")
UNROUTABLE = "hopline.unroutable"


def _copy(
    routing_key: str,
    headers: dict[str, Any] | None = None,
    *,
    message_id: str | None = "m-1",
    message_type: str | None = None,
) -> AbstractIncomingMessage:
    """The recorder's copy of a message (no `type` unless given: foreign publishers)."""
    return incoming(
        headers, routing_key=routing_key, message_id=message_id, message_type=message_type
    )


def _died(reason: str, **extra: Any) -> dict[str, Any]:
    """Headers of a message the broker dead-lettered from `hopline.orders.normal`."""
    death = {
        "count": 1,
        "reason": reason,
        "queue": "hopline.orders.normal",
        "time": datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC),
        "exchange": "hopline.ingress",
        "routing-keys": ["normal.orders.created"],
    }
    return {"x-death": [death], "x-delivery-count": 5, **extra}


# -- unroutable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing_key", "message_type", "expected_key", "expected_type"),
    [
        # a well-formed key no service binds: the type comes from it
        ("normal.invoices.sent", None, "normal.invoices.sent", "invoices.sent"),
        # the type property wins over the key
        ("normal.invoices.sent", "billing.sent", "normal.invoices.sent", "billing.sent"),
        # a malformed key: no type is guessed from it
        ("jobs.ok", None, "jobs.ok", None),
        ("urgent.jobs.ok", None, "urgent.jobs.ok", None),
        # a scheduled message nobody subscribes to arrives with its delay's bit words
        (delay_routing_key(9, "low.reports.render"), None, "low.reports.render", "reports.render"),
    ],
)
def test_an_unroutable_copy_says_unroutable_with_its_key_and_where_it_is_kept(
    routing_key: str, message_type: str | None, expected_key: str, expected_type: str | None
) -> None:
    fate = unroutable_event(
        _copy(routing_key, message_type=message_type), PRIORITIES, UNROUTABLE, NOW
    )

    assert isinstance(fate, Event)
    assert (fate.event, fate.message_id, fate.service) == ("unroutable", "m-1", "producer")
    assert (fate.routing_key, fate.type) == (expected_key, expected_type)
    assert (fate.attempt, fate.at, fate.replay) == (1, NOW, 0)
    assert fate.reason is not None
    assert f"routing key {expected_key!r} matched no binding" in fate.reason
    assert "kept in hopline.unroutable" in fate.reason


def test_an_unroutable_copy_keeps_the_attempt_and_replay_it_carries() -> None:
    headers = {h.ATTEMPT: 3, h.REPLAY_COUNT: 1, h.ROUTING_KEY: "high.orders.created"}

    fate = unroutable_event(_copy("high.nope", headers), PRIORITIES, UNROUTABLE, NOW)

    assert isinstance(fate, Event)
    assert (fate.attempt, fate.replay, fate.routing_key) == (3, 1, "high.orders.created")


def test_an_unroutable_copy_without_a_message_id_cannot_be_looked_up() -> None:
    fate = unroutable_event(_copy("normal.x.y", message_id=None), PRIORITIES, UNROUTABLE, NOW)

    assert fate == NoMessageId("unroutable", "normal.x.y")


# -- dead letters --------------------------------------------------------------------------


def test_a_delivery_limit_death_says_quarantined_for_the_service_with_the_broker_s_cause() -> None:
    headers = _died("delivery_limit", **{h.ATTEMPT: 2})

    fate = delivery_limit_event(_copy("orders", headers), PRIORITIES, NOW)

    assert isinstance(fate, Event)
    assert (fate.event, fate.message_id, fate.service) == ("quarantined", "m-1", "orders")
    assert (fate.routing_key, fate.type, fate.attempt) == (
        "normal.orders.created",
        "orders.created",
        2,
    )
    assert fate.error_type == "DeliveryLimitExceeded"
    assert fate.reason is not None and fate.reason.startswith("delivery_limit: delivered 6 times")
    assert fate.at == NOW


@pytest.mark.parametrize(
    ("why", "headers"),
    [
        # the consumer's own quarantine copy: no x-death, and the consumer said `quarantined`
        (
            "quarantine copy",
            {h.ERROR_TYPE: "PermanentError", h.REASON: "permanent", h.ATTEMPT: 1},
        ),
        # the reject fallback: the consumer said `quarantined` before it rejected
        ("reject fallback", _died("rejected")),
        # a death further back is history, not what brought it here
        (
            "older death",
            {
                "x-death": [
                    {"reason": "rejected", "queue": "hopline.orders.normal"},
                    {"reason": "delivery_limit", "queue": "hopline.orders.normal"},
                ]
            },
        ),
    ],
)
def test_a_dead_letter_a_consumer_already_announced_says_nothing(
    why: str, headers: dict[str, Any]
) -> None:
    assert delivery_limit_event(_copy("orders", headers), PRIORITIES, NOW) is None, why


def test_a_delivery_limit_death_without_a_message_id_cannot_be_looked_up() -> None:
    copy = _copy("orders", _died("delivery_limit"), message_id=None)

    assert delivery_limit_event(copy, PRIORITIES, NOW) == NoMessageId(
        "quarantined", "normal.orders.created"
    )


def test_a_scheduled_message_s_delivery_limit_death_shows_the_key_it_was_scheduled_for() -> None:
    headers = _died("delivery_limit")
    headers["x-death"][0]["routing-keys"] = [delay_routing_key(3, "normal.orders.created")]

    fate = delivery_limit_event(_copy("orders", headers), PRIORITIES, NOW)

    assert isinstance(fate, Event)
    assert (fate.routing_key, fate.type) == ("normal.orders.created", "orders.created")


# -- the delay levels' keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "target"),
    [
        (delay_routing_key(9, "high.orders.created"), "high.orders.created"),
        (delay_routing_key(0, "requeue"), "requeue"),
        ("high.orders.created", "high.orders.created"),
        ("0.1.high.x", "0.1.high.x"),  # a few bit-like words are not a delay's 28
        ("", ""),
    ],
)
def test_scheduled_target_takes_the_delay_s_bit_words_off(key: str, target: str) -> None:
    assert scheduled_target(key) == target
