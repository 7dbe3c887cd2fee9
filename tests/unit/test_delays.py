"""common.delays: the bits of a delay, the levels it waits in, and the keys that carry it.

The routing walk below follows the topology's own bindings with AMQP topic matching, the way
the broker does, so the level path is checked against the data that is declared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.delays import (
    MAX_DELAY_S,
    REQUEUE_TARGET,
    DelayError,
    delay_bucket,
    delay_route,
    delay_routing_key,
    held_for,
    levels_of,
    publish_route,
    seconds_until,
    whole_seconds,
)
from common.headers import DELIVER_AT
from common.names import Names, topic_matches
from common.settings import HoplineSettings
from common.topology import Topology, arguments_of, service_topology

NAMES = Names()


@pytest.mark.parametrize(
    ("delay_s", "seconds"), [(0, 0), (0.001, 1), (1, 1), (1.2, 2), (37, 37), (59.999, 60)]
)
def test_delays_are_rounded_up_to_whole_seconds_never_down(delay_s: float, seconds: int) -> None:
    assert whole_seconds(delay_s) == seconds


@pytest.mark.parametrize("delay_s", [-0.5, float("nan"), float("inf"), MAX_DELAY_S + 1])
def test_a_delay_out_of_range_is_refused(delay_s: float) -> None:
    with pytest.raises(DelayError):
        whole_seconds(delay_s)


@pytest.mark.parametrize(
    ("delay_s", "levels"),
    [
        (0, ()),
        (1, (0,)),
        (3, (1, 0)),
        (9, (3, 0)),
        (37, (5, 2, 0)),
        (MAX_DELAY_S, (*range(27, -1, -1),)),
    ],
)
def test_a_delay_waits_in_the_levels_of_its_one_bits_highest_first(
    delay_s: float, levels: tuple[int, ...]
) -> None:
    assert levels_of(delay_s) == levels
    assert sum(2**level for level in levels) == whole_seconds(delay_s)


def test_the_routing_key_is_28_bit_words_most_significant_first_then_the_target() -> None:
    key = delay_routing_key(9, "high.orders.created")

    words = key.split(".")
    assert words[:28] == ["0"] * 24 + ["1", "0", "0", "1"]
    assert ".".join(words[28:]) == "high.orders.created"


def test_a_key_too_long_for_amqp_with_its_delay_is_refused() -> None:
    long_type = "a" * 200  # the longest type the API takes
    delay_routing_key(5, f"high.{'a' * 100}")  # fits
    with pytest.raises(DelayError, match="too long to be delayed"):
        delay_routing_key(5, f"high.{long_type}")


def test_seconds_until_refuses_the_past() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    assert seconds_until(now + timedelta(seconds=90), now) == 90
    with pytest.raises(DelayError, match="in the past"):
        seconds_until(now - timedelta(seconds=1), now)


@pytest.mark.parametrize(
    ("delay_s", "label"),
    [(0, "le_0s"), (1, "le_1s"), (2, "le_2s"), (5, "le_8s"), (8, "le_8s"), (600, "le_1024s")],
)
def test_the_metric_label_of_a_delay_is_bounded_to_powers_of_two(
    delay_s: float, label: str
) -> None:
    assert delay_bucket(delay_s) == label


def test_an_immediate_message_goes_to_the_ingress_and_a_delayed_one_to_its_top_level() -> None:
    key = "high.orders.created"
    assert publish_route(NAMES, key, None) == ("hopline.ingress", key)
    assert publish_route(NAMES, key, 0) == ("hopline.ingress", key)
    assert publish_route(NAMES, key, 3) == ("hopline.delay.1", delay_routing_key(3, key))
    assert publish_route(NAMES, key, 37) == ("hopline.delay.5", delay_routing_key(37, key))


def test_a_retry_without_a_wait_enters_at_due() -> None:
    assert delay_route(NAMES, 0, REQUEUE_TARGET) == (
        "hopline.delay.due",
        delay_routing_key(0, REQUEUE_TARGET),
    )


def walk(topology: Topology, exchange: str, key: str, queues: list[str]) -> None:
    """Follow the bindings like the broker: queues reached directly and through exchanges."""
    for binding in topology.bindings:
        if binding.source != exchange or not topic_matches(binding.routing_key, key):
            continue
        if binding.destination_type == "exchange":
            if binding.destination == NAMES.requeue:
                queues.append(NAMES.requeue)
            else:
                walk(topology, binding.destination, key, queues)
        else:
            queues.append(binding.destination)


def hops(topology: Topology, key: str, entry: str = NAMES.delay) -> list[str]:
    """Every queue the message sits in, from publish to its destination."""
    path: list[str] = []
    reached: list[str] = []
    walk(topology, entry, key, reached)
    while reached:
        (queue,) = reached  # a delayed message is in exactly one place at a time
        path.append(queue)
        if not queue.startswith(f"{NAMES.delay}."):
            break
        after = arguments_of(topology.queue(queue))["x-dead-letter-exchange"]
        reached = []
        walk(topology, after, key, reached)
    return path


TOPOLOGY = service_topology(HoplineSettings(), "orders", ["orders.created", "payments.#"])


@pytest.mark.parametrize("delay_s", [0, 1, 3, 10, 37, 600, 86_400, MAX_DELAY_S])
def test_a_scheduled_message_waits_in_its_levels_then_reaches_its_type_s_queue(
    delay_s: int,
) -> None:
    path = hops(TOPOLOGY, delay_routing_key(delay_s, "high.orders.created"))

    assert path == [
        *(NAMES.delay_level(level) for level in levels_of(delay_s)),
        "hopline.orders.high",
    ]


@pytest.mark.parametrize("delay_s", [0, 1, 5, 37, 86_400])
def test_entering_at_the_top_level_of_the_delay_takes_the_same_path_as_at_the_entry(
    delay_s: int,
) -> None:
    target = "low.orders.created"
    exchange, key = delay_route(NAMES, delay_s, target)

    assert hops(TOPOLOGY, key, exchange) == hops(TOPOLOGY, key)


def test_a_retry_leaves_the_levels_for_requeue_whatever_its_original_key() -> None:
    path = hops(TOPOLOGY, delay_routing_key(5, REQUEUE_TARGET))

    assert path == ["hopline.delay.2", "hopline.delay.0", NAMES.requeue]


def test_the_bit_words_never_let_one_priority_s_pattern_take_another_s_message() -> None:
    # The catch-all binds `high.#`: behind a `#.` prefix (`#.high.#`) it would also take a
    # delayed `normal` message whose type starts with `high`
    topology = service_topology(HoplineSettings(), "orders", ["#"])

    path = hops(topology, delay_routing_key(1, "normal.high.payments.made"))

    assert path == ["hopline.delay.0", "hopline.orders.normal"]
    assert "hopline.orders.high" not in path


def test_a_scheduled_type_nobody_subscribes_to_finds_no_queue_and_falls_to_unroutable() -> None:
    path = hops(TOPOLOGY, delay_routing_key(2, "low.nobody.listens"))

    assert path == ["hopline.delay.1"]  # then `due` matches nothing: its alternate exchange
    assert arguments_of(next(e for e in TOPOLOGY.exchanges if e.name == NAMES.delay_due)) == {
        "alternate-exchange": NAMES.unroutable
    }


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "held"),
    [
        ((NOW + timedelta(seconds=30)).isoformat(), 30.0),
        ((NOW + timedelta(seconds=30)).isoformat().encode(), 30.0),
        (NOW.timestamp() + 12, 12.0),
        (int(NOW.timestamp()) + 7, 7.0),
        ((NOW - timedelta(seconds=1)).isoformat(), None),  # due already
        (NOW.isoformat(), None),
        ("next tuesday", None),  # unreadable: handled now, not held on a guess
        (True, None),
        (float("nan"), None),
    ],
)
def test_a_foreign_deliver_at_holds_a_delivery_until_it_is_due(
    value: object, held: float | None
) -> None:
    assert held_for({DELIVER_AT: value}, NOW) == held


def test_a_message_that_has_been_through_the_levels_is_never_held_again() -> None:
    headers = {
        DELIVER_AT: (NOW + timedelta(seconds=30)).isoformat(),
        "x-death": [{"queue": b"acme.delay.0", "reason": b"expired", "count": 1}],
    }

    assert held_for(headers, NOW) is None


def test_deaths_elsewhere_do_not_count_as_having_waited() -> None:
    headers = {
        DELIVER_AT: (NOW + timedelta(seconds=30)).isoformat(),
        "x-death": [{"queue": "hopline.delay.high", "reason": "rejected", "count": 1}],
    }

    assert held_for(headers, NOW) == 30.0


def test_a_delivery_without_the_header_is_not_held() -> None:
    assert held_for(None, NOW) is None
    assert held_for({"x-hopline-attempt": 2}, NOW) is None


def test_a_hold_is_capped_at_the_longest_delay() -> None:
    assert held_for({DELIVER_AT: "9999-01-01T00:00:00+00:00"}, NOW) == MAX_DELAY_S
