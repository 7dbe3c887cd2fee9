"""The topology as RabbitMQ definitions JSON (management UI import) and as a Mermaid diagram."""

from __future__ import annotations

from typing import Any

from common.topology import Topology, arguments_of

__all__ = ["to_definitions", "to_mermaid"]


def to_definitions(topology: Topology, *, vhost: str = "/") -> dict[str, Any]:
    """A definitions document that `rabbitmqctl import_definitions` and the UI accept."""
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": exchange.name,
                "vhost": vhost,
                "type": exchange.type,
                "durable": exchange.durable,
                "auto_delete": False,
                "internal": False,
                "arguments": arguments_of(exchange),
            }
            for exchange in topology.exchanges
        ],
        "queues": [
            {
                "name": queue.name,
                "vhost": vhost,
                "durable": queue.durable,
                "auto_delete": False,
                "arguments": arguments_of(queue),
            }
            for queue in topology.queues
        ],
        "bindings": [
            {
                "source": binding.source,
                "vhost": vhost,
                "destination": binding.destination,
                "destination_type": "queue",
                "routing_key": binding.routing_key,
                "arguments": arguments_of(binding),
            }
            for binding in topology.bindings
        ],
    }


def _node(name: str) -> str:
    return name.replace(".", "_").replace("-", "_").replace("#", "hash")


def to_mermaid(topology: Topology) -> str:
    """`flowchart LR`: exchanges as hexagons, queues as cylinders, bindings as labelled edges."""
    lines = ["flowchart LR"]
    for exchange in topology.exchanges:
        lines.append(
            f'    {_node("x_" + exchange.name)}{{{{"{exchange.name}<br/>({exchange.type})"}}}}'
        )
    for queue in topology.queues:
        lines.append(f'    {_node("q_" + queue.name)}[("{queue.name}")]')
    for binding in topology.bindings:
        label = binding.routing_key or ", ".join(
            f"{k}={v}" for k, v in binding.argument_items if k != "x-match"
        )
        edge = f"-- {label} -->" if label else "-->"
        lines.append(
            f"    {_node('x_' + binding.source)} {edge} {_node('q_' + binding.destination)}"
        )
    for exchange in topology.exchanges:
        alternate = arguments_of(exchange).get("alternate-exchange")
        if alternate:
            lines.append(
                f"    {_node('x_' + exchange.name)} -. unroutable .-> {_node('x_' + alternate)}"
            )
    for queue in topology.queues:
        dead_letter = arguments_of(queue).get("x-dead-letter-exchange")
        if dead_letter:
            lines.append(
                f"    {_node('q_' + queue.name)} -. dead-letter .-> {_node('x_' + dead_letter)}"
            )
    return "\n".join(lines) + "\n"
