"""common.definitions: the topology as definitions JSON and as a Mermaid diagram."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.definitions import to_definitions, to_mermaid
from common.settings import HoplineSettings
from common.topology import Topology, arguments_of, core_topology, service_topology


@pytest.fixture
def topology() -> Topology:
    settings = HoplineSettings()
    return service_topology(settings, "orders", ["orders.created", "payments.*", "#"]) + (
        service_topology(settings, "billing", ["billing.invoice_paid"])
    )


def test_definitions_survive_a_json_round_trip(topology: Topology) -> None:
    document = to_definitions(topology)

    assert json.loads(json.dumps(document)) == document


def test_definitions_hold_every_exchange_queue_and_binding(topology: Topology) -> None:
    document = to_definitions(topology, vhost="prod")

    assert document["vhosts"] == [{"name": "prod"}]
    assert [e["name"] for e in document["exchanges"]] == [e.name for e in topology.exchanges]
    assert [q["name"] for q in document["queues"]] == [q.name for q in topology.queues]
    assert [(b["source"], b["destination"], b["routing_key"]) for b in document["bindings"]] == [
        (b.source, b.destination, b.routing_key) for b in topology.bindings
    ]
    every_item: list[dict[str, Any]] = [
        *document["exchanges"],
        *document["queues"],
        *document["bindings"],
    ]
    assert all(item["vhost"] == "prod" for item in every_item)


def test_definitions_carry_types_durability_and_arguments(topology: Topology) -> None:
    document = to_definitions(topology)

    exchanges = {e["name"]: e for e in document["exchanges"]}
    queues = {q["name"]: q for q in document["queues"]}
    assert exchanges["hopline.requeue"]["type"] == "headers"
    assert exchanges["hopline.ingress"]["arguments"] == {"alternate-exchange": "hopline.unroutable"}
    assert all(e["durable"] and not e["auto_delete"] for e in exchanges.values())
    assert all(q["durable"] and not q["auto_delete"] for q in queues.values())
    for spec in topology.queues:
        assert queues[spec.name]["arguments"] == arguments_of(spec)
    assert {b["destination_type"] for b in document["bindings"]} == {"queue", "exchange"}
    assert {
        "source": "hopline.delay.due",
        "vhost": "/",
        "destination": "hopline.requeue",
        "destination_type": "exchange",
        "routing_key": "*." * 28 + "requeue",
        "arguments": {},
    } in document["bindings"]


def test_requeue_binding_arguments_are_exported(topology: Topology) -> None:
    document = to_definitions(topology)

    requeue = [
        b
        for b in document["bindings"]
        if b["source"] == "hopline.requeue" and b["destination"] == "hopline.orders.high"
    ]
    assert [b["arguments"] for b in requeue] == [
        {"x-match": "all-with-x", "x-hopline-queue": "hopline.orders.high"}
    ]


def test_the_default_vhost_is_the_root() -> None:
    document = to_definitions(core_topology(HoplineSettings()))

    assert document["vhosts"] == [{"name": "/"}]


def test_the_diagram_is_a_flowchart_naming_every_queue_and_exchange(topology: Topology) -> None:
    diagram = to_mermaid(topology)

    assert diagram.startswith("flowchart LR\n")
    assert diagram.endswith("\n")
    for name in [q.name for q in topology.queues] + [e.name for e in topology.exchanges]:
        assert f'"{name}' in diagram


def test_the_diagram_shows_bindings_alternate_exchange_and_dead_letters(
    topology: Topology,
) -> None:
    lines = to_mermaid(topology).splitlines()

    assert "    x_hopline_ingress -- high.orders.created --> q_hopline_orders_high" in lines
    assert "    x_hopline_ingress -- high.hash --> q_hopline_orders_high" not in lines
    assert "    x_hopline_ingress -. unroutable .-> x_hopline_unroutable" in lines
    assert "    q_hopline_orders_high -. dead-letter .-> x_hopline_dlx" in lines
    assert "    q_hopline_delay_5 -. dead-letter .-> x_hopline_delay_4" in lines
    assert "    q_hopline_delay_0 -. dead-letter .-> x_hopline_delay_due" in lines
    assert "    x_hopline_delay -- # --> x_hopline_delay_27" in lines
    assert (
        "    x_hopline_requeue -- x-hopline-queue=hopline.orders.high --> q_hopline_orders_high"
        in lines
    )


def test_diagram_node_ids_hold_no_mermaid_punctuation(topology: Topology) -> None:
    for line in to_mermaid(topology).splitlines()[1:]:
        node_id = line.split()[0]
        node_id = node_id.split("{")[0].split("[")[0]
        assert node_id.replace("_", "").isalnum(), line
