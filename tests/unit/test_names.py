"""common.names: routing keys, topic matching and tier suffixes, as RabbitMQ reads them."""

from __future__ import annotations

import pytest

from common.names import (
    Names,
    RoutingKeyError,
    format_delay,
    is_valid_message_type,
    parse_routing_key,
    routing_key,
    topic_matches,
)

PRIORITIES = ("high", "normal", "low")


def test_routing_key_puts_the_priority_first() -> None:
    assert routing_key("high", "orders.created") == "high.orders.created"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("high.orders.created", ("high", "orders.created")),
        ("low.ping", ("low", "ping")),
        ("normal.billing.invoice_paid", ("normal", "billing.invoice_paid")),
        ("normal.a-b.c1", ("normal", "a-b.c1")),
    ],
)
def test_parse_routing_key_splits_priority_and_type(key: str, expected: tuple[str, str]) -> None:
    assert parse_routing_key(key, PRIORITIES) == expected


def test_parse_routing_key_round_trips_routing_key() -> None:
    assert parse_routing_key(routing_key("low", "a.b.c"), PRIORITIES) == ("low", "a.b.c")


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("high", "has no message type"),
        ("high.", "has no message type"),
        ("", "has no message type"),
        ("urgent.orders.created", "unknown priority 'urgent'"),
        ("HIGH.orders.created", "unknown priority 'HIGH'"),
        ("high.Orders.created", "invalid message type 'Orders.created'"),
        ("high.orders..created", "invalid message type"),
        ("high.orders.created.", "invalid message type"),
        ("high.orders.*", "invalid message type"),
        ("high.orders.#", "invalid message type"),
        ("high.orders created", "invalid message type"),
    ],
)
def test_parse_routing_key_explains_what_is_wrong(key: str, fragment: str) -> None:
    with pytest.raises(RoutingKeyError, match="expected") as caught:
        parse_routing_key(key, PRIORITIES)

    assert fragment in str(caught.value)
    assert repr(key) in str(caught.value)


def test_unknown_priority_error_lists_the_known_ones() -> None:
    with pytest.raises(RoutingKeyError) as caught:
        parse_routing_key("urgent.x", PRIORITIES)

    assert "high, normal, low" in str(caught.value)


def test_routing_key_error_is_a_value_error() -> None:
    assert issubclass(RoutingKeyError, ValueError)


@pytest.mark.parametrize(
    ("message_type", "valid"),
    [
        ("orders", True),
        ("orders.created", True),
        ("billing.invoice_paid", True),
        ("a-b.c-d", True),
        ("0.1", True),
        ("Orders", False),
        ("_orders", False),
        ("-orders", False),
        (".orders", False),
        ("orders.", False),
        ("orders..created", False),
        ("", False),
        ("orders/created", False),
        ("a" * 200, True),
        ("a" * 201, False),
    ],
)
def test_is_valid_message_type(message_type: str, valid: bool) -> None:
    assert is_valid_message_type(message_type) is valid


@pytest.mark.parametrize(
    ("pattern", "message_type", "matches"),
    [
        # exact words
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.updated", False),
        ("orders.created", "orders", False),
        ("orders", "orders.created", False),
        # `*` is exactly one word
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.created.v2", False),
        ("*", "orders", True),
        ("*", "orders.created", False),
        ("*.created", "orders.created", True),
        ("*.created", "created", False),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
        ("orders.*.v2", "orders.created.v2", True),
        ("orders.*.v2", "orders.v2", False),
        # `#` is zero or more words
        ("#", "orders", True),
        ("#", "orders.created.v2", True),
        ("orders.#", "orders", True),
        ("orders.#", "orders.created", True),
        ("orders.#", "orders.created.v2", True),
        ("orders.#", "payments.created", False),
        ("orders.#", "ordersx", False),
        ("#.created", "created", True),
        ("#.created", "orders.created", True),
        ("#.created", "a.b.created", True),
        ("#.created", "orders.created.v2", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y", False),
        ("#.#", "a", True),
        ("#.#", "a.b.c", True),
        ("#.*", "a", True),
        ("#.*.#", "a.b", True),
        # mixed
        ("*.#", "a", True),
        ("*.#", "a.b.c", True),
        ("orders.*.#", "orders", False),
        ("orders.*.#", "orders.created", True),
        # a word that merely contains a wildcard character is literal
        ("orders*", "orders", False),
    ],
)
def test_topic_matches_like_rabbitmq(pattern: str, message_type: str, matches: bool) -> None:
    assert topic_matches(pattern, message_type) is matches


@pytest.mark.parametrize(
    ("delay_s", "suffix"),
    [
        (0.1, "100ms"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.0, "1s"),
        (5, "5s"),
        (30, "30s"),
        (59, "59s"),
        (60, "1m"),
        (90, "90s"),
        (120, "2m"),
        (600, "10m"),
        (3600, "1h"),
        (7200, "2h"),
        (5400, "90m"),
        (86400, "24h"),
    ],
)
def test_format_delay_reads_like_an_operator_writes_it(delay_s: float, suffix: str) -> None:
    assert format_delay(delay_s) == suffix


@pytest.mark.parametrize("delay_s", [0, 0.0, -1, -0.5])
def test_format_delay_refuses_non_positive_delays(delay_s: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        format_delay(delay_s)


def test_default_names_follow_the_design() -> None:
    names = Names()

    assert names.prefix == "hopline"
    assert names.ingress == "hopline.ingress"
    assert names.unroutable == "hopline.unroutable"
    assert names.delay == "hopline.delay"
    assert names.delay_level(0) == "hopline.delay.0"
    assert names.delay_level(27) == "hopline.delay.27"
    assert names.delay_due == "hopline.delay.due"
    assert names.requeue == "hopline.requeue"
    assert names.dlx == "hopline.dlx"
    assert names.status == "hopline.status"
    assert names.status_unroutable == "hopline.status.unroutable"
    assert names.status_dead_letters == "hopline.status.dead-letters"
    assert names.legacy_retry == "hopline.retry"
    assert names.legacy_retry_queue(5) == "hopline.retry.5s"
    assert names.legacy_retry_queue(120) == "hopline.retry.2m"
    assert names.work_queue("orders", "high") == "hopline.orders.high"
    assert names.quarantine("orders") == "hopline.orders.quarantine"


def test_names_use_the_configured_prefix_everywhere() -> None:
    names = Names("acme")

    every_name = [
        names.ingress,
        names.unroutable,
        names.delay,
        names.delay_level(4),
        names.delay_due,
        names.requeue,
        names.dlx,
        names.status,
        names.status_unroutable,
        names.status_dead_letters,
        names.legacy_retry_queue(1),
        names.work_queue("orders", "low"),
        names.quarantine("orders"),
    ]

    assert all(name.startswith("acme.") for name in every_name)
    assert len(set(every_name)) == len(every_name)


def test_names_are_frozen_values() -> None:
    names = Names("acme")

    assert names == Names("acme")
    assert hash(names) == hash(Names("acme"))
    with pytest.raises(AttributeError):
        names.prefix = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("queue", "holds"),
    [
        ("hopline.orders.quarantine", True),
        ("hopline.unroutable", True),
        ("hopline.orders.high", False),  # a work queue: an import must not inject work
        ("hopline.retry.1s", False),
        ("hopline.status.unroutable", False),  # the recorder's copies, not the operators'
        ("hopline.status.dead-letters", False),
        ("other.orders.quarantine", False),
        ("hopline.a.b.quarantine", False),
        ("hopline..quarantine", False),
    ],
)
def test_only_quarantine_and_unroutable_queues_hold_failures(queue: str, holds: bool) -> None:
    assert Names().holds_failures(queue) is holds
