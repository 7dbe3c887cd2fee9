"""common.topology: the broker objects as data, per settings and broker version."""

from __future__ import annotations

from typing import Any

import pytest

from common.settings import HoplineSettings
from common.topology import (
    CURRENT_RELEASE,
    BindingSpec,
    BrokerVersion,
    ExchangeSpec,
    QueueSpec,
    Topology,
    arguments_of,
    core_topology,
    service_topology,
)

RABBITMQ_3_10 = BrokerVersion(3, 10)
RABBITMQ_4_0 = BrokerVersion(4, 0)
PRIORITIES = ("high", "normal", "low")


@pytest.fixture
def settings() -> HoplineSettings:
    return HoplineSettings()


@pytest.fixture
def classic() -> HoplineSettings:
    return HoplineSettings(queue_type="classic")


def queue_args(topology: Topology, name: str) -> dict[str, Any]:
    return arguments_of(topology.queue(name))


def exchanges(topology: Topology) -> dict[str, ExchangeSpec]:
    return {exchange.name: exchange for exchange in topology.exchanges}


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("3.10.8", BrokerVersion(3, 10)),
        ("3.13.7", BrokerVersion(3, 13)),
        ("4.0.5", BrokerVersion(4, 0)),
        (b"4.1.0", BrokerVersion(4, 1)),
        ("3.12.0-rc.1", BrokerVersion(3, 12)),
        (None, CURRENT_RELEASE),
        ("", CURRENT_RELEASE),
        ("garbage", CURRENT_RELEASE),
        ("x.y.z", CURRENT_RELEASE),
    ],
)
def test_broker_version_parse(text: str | bytes | None, version: BrokerVersion) -> None:
    assert BrokerVersion.parse(text) == version


def test_broker_versions_order_numerically() -> None:
    assert BrokerVersion(3, 9) < BrokerVersion(3, 10) < BrokerVersion(3, 13) < BrokerVersion(4)


def test_core_topology_declares_the_designed_exchanges(settings: HoplineSettings) -> None:
    found = exchanges(core_topology(settings))

    levels = {f"hopline.delay.{n}": "topic" for n in range(28)}
    assert {name: spec.type for name, spec in found.items()} == {
        "hopline.ingress": "topic",
        "hopline.unroutable": "fanout",
        "hopline.requeue": "headers",
        "hopline.dlx": "direct",
        "hopline.events": "topic",
        "hopline.delay": "topic",
        **levels,
        "hopline.delay.due": "topic",
    }
    assert all(spec.durable for spec in found.values())
    assert arguments_of(found["hopline.ingress"]) == {"alternate-exchange": "hopline.unroutable"}
    # nothing a delay exchange cannot route is dropped
    for name in ("hopline.delay", "hopline.delay.due", *levels):
        assert arguments_of(found[name]) == {"alternate-exchange": "hopline.unroutable"}


def test_core_topology_keeps_unroutable_messages(settings: HoplineSettings) -> None:
    topology = core_topology(settings)

    assert topology.queue("hopline.unroutable").durable
    assert BindingSpec("hopline.unroutable", "hopline.unroutable") in topology.bindings


def test_core_topology_has_28_delay_levels_and_no_retry_tiers(settings: HoplineSettings) -> None:
    topology = core_topology(settings)

    assert [q.name for q in topology.queues] == [
        "hopline.unroutable",
        "hopline.status",
        "hopline.status.unroutable",
        "hopline.status.dead-letters",
        *(f"hopline.delay.{n}" for n in reversed(range(28))),
    ]
    assert not any("retry" in spec.name for spec in (*topology.queues, *topology.exchanges))


@pytest.mark.parametrize("level", [0, 1, 5, 27])
def test_each_level_routes_its_bit_into_its_queue_and_the_rest_onwards(
    settings: HoplineSettings, level: int
) -> None:
    topology = core_topology(settings)
    name = f"hopline.delay.{level}"
    onwards = f"hopline.delay.{level - 1}" if level else "hopline.delay.due"
    before = "*." * (27 - level)

    assert BindingSpec(name, name, f"{before}1.#") in topology.bindings
    assert BindingSpec(name, onwards, f"{before}0.#", (), "exchange") in topology.bindings
    assert queue_args(topology, name)["x-dead-letter-exchange"] == onwards


def test_delayed_messages_enter_at_the_top_and_retries_leave_to_requeue(
    settings: HoplineSettings,
) -> None:
    topology = core_topology(settings)

    assert (
        BindingSpec("hopline.delay", "hopline.delay.27", "#", (), "exchange") in topology.bindings
    )
    due = BindingSpec("hopline.delay.due", "hopline.requeue", "*." * 28 + "requeue", (), "exchange")
    assert due in topology.bindings


@pytest.mark.parametrize("version", [RABBITMQ_3_10, RABBITMQ_4_0, CURRENT_RELEASE])
@pytest.mark.parametrize(("level", "ttl_ms"), [(0, 1_000), (3, 8_000), (27, 2**27 * 1_000)])
def test_delay_levels_wait_two_to_the_n_seconds_then_dead_letter_safely(
    settings: HoplineSettings, version: BrokerVersion, level: int, ttl_ms: int
) -> None:
    arguments = queue_args(core_topology(settings, version), f"hopline.delay.{level}")

    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-message-ttl"] == ttl_ms
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"


@pytest.mark.parametrize(
    ("version", "limit"),
    [
        (RABBITMQ_3_10, None),
        (BrokerVersion(3, 13), None),
        (RABBITMQ_4_0, -1),
        (CURRENT_RELEASE, -1),
    ],
)
def test_queues_kept_forever_have_no_ttl_and_no_delivery_limit(
    settings: HoplineSettings, version: BrokerVersion, limit: int | None
) -> None:
    topology = service_topology(settings, "orders", ["orders.created"], version)

    for name in (
        "hopline.unroutable",
        "hopline.orders.quarantine",
        "hopline.status.unroutable",  # a requeued copy must never be dead-lettered away
        "hopline.status.dead-letters",
    ):
        arguments = queue_args(topology, name)
        assert arguments["x-queue-type"] == "quorum"
        assert "x-message-ttl" not in arguments
        assert "x-max-length" not in arguments
        assert "x-dead-letter-exchange" not in arguments
        assert arguments.get("x-delivery-limit") == limit


@pytest.mark.parametrize(
    ("version", "limit"), [(RABBITMQ_3_10, None), (RABBITMQ_4_0, -1), (CURRENT_RELEASE, -1)]
)
def test_delay_levels_delivery_limit_depends_on_the_version(
    settings: HoplineSettings, version: BrokerVersion, limit: int | None
) -> None:
    arguments = queue_args(core_topology(settings, version), "hopline.delay.0")

    assert arguments.get("x-delivery-limit") == limit


def test_service_topology_has_a_work_queue_per_priority_and_a_quarantine(
    settings: HoplineSettings,
) -> None:
    topology = service_topology(settings, "orders", ["orders.created"])

    service_queues = [q.name for q in topology.queues if q.name.startswith("hopline.orders.")]
    assert service_queues == [
        "hopline.orders.high",
        "hopline.orders.normal",
        "hopline.orders.low",
        "hopline.orders.quarantine",
    ]


@pytest.mark.parametrize("version", [RABBITMQ_3_10, RABBITMQ_4_0])
@pytest.mark.parametrize("priority", PRIORITIES)
def test_work_queues_dead_letter_to_quarantine_with_a_delivery_limit(
    version: BrokerVersion, priority: str
) -> None:
    settings = HoplineSettings(delivery_limit=7)

    arguments = queue_args(
        service_topology(settings, "orders", ["orders.created"], version),
        f"hopline.orders.{priority}",
    )

    assert arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": "hopline.dlx",
        "x-dead-letter-routing-key": "orders",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def test_quarantine_is_bound_to_the_dlx_under_the_service_name(settings: HoplineSettings) -> None:
    topology = service_topology(settings, "orders", ["orders.created"])

    assert BindingSpec("hopline.dlx", "hopline.orders.quarantine", "orders") in topology.bindings


def test_work_queues_are_bound_per_priority_and_pattern(settings: HoplineSettings) -> None:
    # Given a service handling an exact type, a pattern and the catch-all (one listed twice)
    patterns = ["orders.created", "payments.*", "#", "orders.created"]

    topology = service_topology(settings, "orders", patterns)

    # Then each priority queue gets one ingress binding per distinct pattern
    ingress = [b for b in topology.bindings if b.source == "hopline.ingress"]
    assert [(b.destination, b.routing_key) for b in ingress] == [
        (f"hopline.orders.{priority}", f"{priority}.{pattern}")
        for priority in PRIORITIES
        for pattern in ("orders.created", "payments.*", "#")
    ]
    # and the same on `due` behind the 28 bit words, so a scheduled message finds it too
    due = [b for b in topology.bindings if b.source == "hopline.delay.due"]
    assert [(b.destination, b.routing_key) for b in due if b.destination_type == "queue"] == [
        (f"hopline.orders.{priority}", "*." * 28 + f"{priority}.{pattern}")
        for priority in PRIORITIES
        for pattern in ("orders.created", "payments.*", "#")
    ]


@pytest.mark.parametrize("priority", PRIORITIES)
def test_requeue_binding_brings_a_retry_back_to_exactly_its_queue(
    settings: HoplineSettings, priority: str
) -> None:
    queue = f"hopline.orders.{priority}"

    topology = service_topology(settings, "orders", ["orders.created"])

    requeue = [b for b in topology.bindings if b.source == "hopline.requeue"]
    mine = [b for b in requeue if b.destination == queue]
    assert len(mine) == 1
    # `all` would ignore x- headers; `all-with-x` matches on them
    assert arguments_of(mine[0]) == {"x-match": "all-with-x", "x-hopline-queue": queue}
    assert mine[0].routing_key == ""


def test_classic_queues_leave_out_quorum_only_arguments(classic: HoplineSettings) -> None:
    topology = service_topology(classic, "orders", ["orders.created"], RABBITMQ_4_0)

    assert queue_args(topology, "hopline.orders.high") == {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "hopline.dlx",
        "x-dead-letter-routing-key": "orders",
    }
    assert queue_args(topology, "hopline.delay.2") == {
        "x-queue-type": "classic",
        "x-message-ttl": 4_000,
        "x-dead-letter-exchange": "hopline.delay.1",
    }
    assert queue_args(topology, "hopline.orders.quarantine") == {"x-queue-type": "classic"}
    assert queue_args(topology, "hopline.unroutable") == {"x-queue-type": "classic"}


def test_a_subset_of_priorities_gets_only_those_work_queues() -> None:
    settings = HoplineSettings(priorities=["high", "low"])

    topology = service_topology(settings, "orders", ["#"])

    work = [q.name for q in topology.queues if q.name.startswith("hopline.orders.")]
    assert work == ["hopline.orders.high", "hopline.orders.low", "hopline.orders.quarantine"]


def test_the_prefix_names_every_object() -> None:
    settings = HoplineSettings(prefix="acme")

    topology = service_topology(settings, "orders", ["orders.created"])

    names = [e.name for e in topology.exchanges] + [q.name for q in topology.queues]
    assert all(name.startswith("acme.") for name in names)
    assert all(b.source.startswith("acme.") for b in topology.bindings)
    assert queue_args(topology, "acme.orders.high")["x-dead-letter-exchange"] == "acme.dlx"


def test_service_topology_includes_the_core(settings: HoplineSettings) -> None:
    core = core_topology(settings)
    service = service_topology(settings, "orders", ["orders.created"])

    assert set(core.exchanges) <= set(service.exchanges)
    assert set(core.queues) <= set(service.queues)
    assert set(core.bindings) <= set(service.bindings)


def test_adding_topologies_removes_duplicates_and_keeps_order(settings: HoplineSettings) -> None:
    # Given two services sharing the same core
    orders = service_topology(settings, "orders", ["orders.#"])
    billing = service_topology(settings, "billing", ["billing.#"])

    # When they are combined
    combined = orders + billing

    # Then every object appears once, the first service's first
    for specs in (combined.exchanges, combined.queues, combined.bindings):
        assert len(set(specs)) == len(specs)
    assert combined.queues[: len(orders.queues)] == orders.queues
    assert {q.name for q in combined.queues} == {q.name for q in orders.queues} | {
        q.name for q in billing.queues
    }
    assert core_topology(settings) + core_topology(settings) == core_topology(settings)


def test_topology_queue_lookup_raises_key_error_for_unknown_names(
    settings: HoplineSettings,
) -> None:
    with pytest.raises(KeyError, match=r"hopline\.nope"):
        core_topology(settings).queue("hopline.nope")


def test_specs_are_hashable_values() -> None:
    spec = QueueSpec("q", (("x-queue-type", "quorum"),))

    assert spec == QueueSpec("q", (("x-queue-type", "quorum"),))
    assert len({spec, QueueSpec("q", (("x-queue-type", "quorum"),))}) == 1
    assert arguments_of(spec) == {"x-queue-type": "quorum"}


def test_building_a_topology_is_deterministic(settings: HoplineSettings) -> None:
    assert service_topology(settings, "orders", ["a.b", "c.*"]) == service_topology(
        settings, "orders", ["a.b", "c.*"]
    )


@pytest.mark.parametrize("version", [RABBITMQ_3_10, CURRENT_RELEASE])
def test_every_lifecycle_event_waits_in_the_status_queue_kept_like_quarantine(
    settings: HoplineSettings, version: BrokerVersion
) -> None:
    topology = core_topology(settings, version)

    assert BindingSpec("hopline.events", "hopline.status", "#") in topology.bindings
    status = arguments_of(topology.queue("hopline.status"))
    assert status == arguments_of(topology.queue("hopline.unroutable"))
    assert "x-message-ttl" not in status and "x-max-length" not in status


def test_the_recorder_gets_a_copy_of_every_unroutable_message_beside_the_operators_queue(
    settings: HoplineSettings,
) -> None:
    topology = core_topology(settings)

    # a fanout copies to both: the operators' queue keeps its message
    assert BindingSpec("hopline.unroutable", "hopline.unroutable") in topology.bindings
    assert BindingSpec("hopline.unroutable", "hopline.status.unroutable") in topology.bindings


def test_the_recorder_gets_a_copy_of_what_each_service_dead_letters(
    settings: HoplineSettings,
) -> None:
    topology = service_topology(settings, "orders", ["orders.created"])

    dlx = {b for b in topology.bindings if b.source == "hopline.dlx"}
    assert dlx == {
        BindingSpec("hopline.dlx", "hopline.orders.quarantine", "orders"),
        BindingSpec("hopline.dlx", "hopline.status.dead-letters", "orders"),
    }
    # declared with the core, so it exists before the first service binds it
    assert topology.queue("hopline.status.dead-letters") in core_topology(settings).queues


def test_with_events_off_nobody_reads_the_recorder_s_copies_so_none_are_made() -> None:
    settings = HoplineSettings(events_enabled=False)

    topology = service_topology(settings, "orders", ["orders.created"])

    names = {q.name for q in topology.queues} | {b.destination for b in topology.bindings}
    assert not names & {"hopline.status.unroutable", "hopline.status.dead-letters"}
