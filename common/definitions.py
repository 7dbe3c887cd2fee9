"""The topology as RabbitMQ definitions JSON (management UI import) and as a Mermaid diagram.

The definitions may also carry one broker user per role with least privilege
(`role_permissions`): RabbitMQ checks configure/write/read per resource name, so each role
gets anchored regexes listing exactly the names it needs, never a prefix wildcard.

- producer: write `<prefix>.ingress` and `<prefix>.events`; read `<prefix>.status` and the
  recorder's copies `<prefix>.status.unroutable` and `<prefix>.status.dead-letters` (the
  status recorder runs in the producer);
- consumer-<service>: read its own work queues; write the retry, requeue, dlx and events
  exchanges;
- operator: read every quarantine queue and the unroutable queue (inspect, take, purge);
  write requeue (replay into the queue a message failed in), ingress (replay of
  unroutable messages) and events (replayed, copied, discarded); the `management` tag for
  the UI and the queue discovery. It declares nothing: the definitions file creates the
  topology, and the services redeclare their part.

The producer and the consumers also declare the topology they use when they connect
(idempotently), so these roles also hold what RabbitMQ demands for exactly those
declarations (`declaration_rights`): configure on each declared name; for an alternate
exchange, read on the exchange and write on its alternate; for a dead-letter exchange, read
on the queue and write on the DLX; for a binding, read on the source and write on the
destination.
Passwords are never written: users carry salted SHA-256 hashes
(`rabbit_password_hashing_sha256`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.names import Names
from common.topology import Topology, arguments_of

__all__ = [
    "BrokerUser",
    "Rights",
    "declaration_rights",
    "names_pattern",
    "password_hash",
    "role_permissions",
    "to_definitions",
    "to_mermaid",
]

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


@dataclass(frozen=True, slots=True)
class Rights:
    """Resource names a user may configure, write (publish, bind to) and read (consume, bind
    from); RabbitMQ does not tell exchanges from queues here, only names."""

    configure: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    read: frozenset[str] = frozenset()

    def __or__(self, other: Rights) -> Rights:
        return Rights(
            self.configure | other.configure, self.write | other.write, self.read | other.read
        )


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """One broker user of the definitions file; `password_hash` only, never a password."""

    name: str
    password_hash: str = field(repr=False)
    rights: Rights
    tags: tuple[str, ...] = ()


def declaration_rights(topology: Topology) -> Rights:
    """What declaring `topology` requires, following RabbitMQ's access-control rules."""
    configure: set[str] = set()
    write: set[str] = set()
    read: set[str] = set()
    for exchange in topology.exchanges:
        configure.add(exchange.name)
        alternate = arguments_of(exchange).get("alternate-exchange")
        if alternate:
            read.add(exchange.name)
            write.add(alternate)
    for queue in topology.queues:
        configure.add(queue.name)
        dead_letter = arguments_of(queue).get("x-dead-letter-exchange")
        if dead_letter:
            read.add(queue.name)
            write.add(dead_letter)
    for binding in topology.bindings:
        read.add(binding.source)
        write.add(binding.destination)
    return Rights(frozenset(configure), frozenset(write), frozenset(read))


def role_permissions(
    names: Names,
    *,
    priorities: Sequence[str],
    core: Topology,
    services: Sequence[tuple[str, Topology]],
) -> dict[str, Rights]:
    """Rights per role: `producer`, `consumer-<service>` for each service, `operator`.

    `core` is what the producer declares, each service topology what its consumer declares.
    """
    # Its queues are in `core`; it also publishes the events of its broker watch.
    recorder = Rights(
        read=frozenset({names.status, names.status_unroutable, names.status_dead_letters})
    )
    roles = {
        "producer": Rights(write=frozenset({names.ingress, names.delay, names.events}))
        | declaration_rights(core)
        | recorder
    }
    quarantines: set[str] = set()
    for service, topology in services:
        work_queues = {names.work_queue(service, priority) for priority in priorities}
        operating = Rights(
            write=frozenset({names.delay, names.requeue, names.dlx, names.events}),
            read=frozenset(work_queues),
        )
        roles[f"consumer-{service}"] = operating | declaration_rights(topology)
        quarantines.add(names.quarantine(service))
    roles["operator"] = Rights(
        write=frozenset({names.requeue, names.ingress, names.events}),
        read=frozenset({*quarantines, names.unroutable}),
    )
    return roles


def names_pattern(names: Iterable[str]) -> str:
    """An anchored regex matching exactly `names`; `""` (nothing at all) when empty."""
    ordered = sorted(set(names))
    if not ordered:
        return ""
    return "^(" + "|".join(re.escape(name) for name in ordered) + ")$"


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def to_definitions(
    topology: Topology, *, vhost: str = "/", users: Sequence[BrokerUser] = ()
) -> dict[str, Any]:
    """A definitions document that `rabbitmqctl import_definitions` and the UI accept.

    With `users`, it also holds those users (hashes only) and their permissions on `vhost`.
    """
    document = {
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
                "destination_type": binding.destination_type,
                "routing_key": binding.routing_key,
                "arguments": arguments_of(binding),
            }
            for binding in topology.bindings
        ],
    }
    if users:
        document["users"] = [
            {
                "name": user.name,
                "password_hash": user.password_hash,
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(user.tags),
                "limits": {},
            }
            for user in users
        ]
        document["permissions"] = [
            {
                "user": user.name,
                "vhost": vhost,
                "configure": names_pattern(user.rights.configure),
                "write": names_pattern(user.rights.write),
                "read": names_pattern(user.rights.read),
            }
            for user in users
        ]
    return document


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
        kind = "x_" if binding.destination_type == "exchange" else "q_"
        lines.append(
            f"    {_node('x_' + binding.source)} {edge} {_node(kind + binding.destination)}"
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
