"""The only module that declares broker objects: topology specs in, idempotent calls out."""

from __future__ import annotations

import re

from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed

from common.connection import access_refused_error
from common.errors import TopologyMismatchError
from common.topology import Topology, arguments_of

__all__ = ["declare_topology"]

# Which setting decides each argument, so the error can name the knob to turn.
_SETTING_OF_ARGUMENT = {
    "x-queue-type": "HOPLINE_QUEUE_TYPE",
    "x-delivery-limit": "HOPLINE_DELIVERY_LIMIT",
}
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>queue|exchange) '(?P<name>[^']+)'"
    r".*?received (?P<received>.+?) but current is (?P<current>.+)$"
)


async def declare_topology(connection: AbstractConnection, topology: Topology) -> None:
    """Declare exchanges, queues and bindings; safe to repeat, fails clearly on a conflict."""
    # A precondition failure closes the channel, so declarations get one of their own.
    async with connection.channel(publisher_confirms=False) as channel:
        raw = await channel.get_underlay_channel()
        try:
            for exchange in topology.exchanges:
                await raw.exchange_declare(
                    exchange.name,
                    exchange_type=exchange.type,
                    durable=exchange.durable,
                    arguments=arguments_of(exchange),
                )
            for queue in topology.queues:
                await raw.queue_declare(
                    queue.name, durable=queue.durable, arguments=arguments_of(queue)
                )
            for binding in topology.bindings:
                bind = (
                    raw.exchange_bind if binding.destination_type == "exchange" else raw.queue_bind
                )
                await bind(
                    binding.destination,
                    binding.source,
                    routing_key=binding.routing_key,
                    arguments=arguments_of(binding),
                )
        except ChannelPreconditionFailed as exc:
            raise _mismatch(exc, topology) from exc
        except ChannelAccessRefused as exc:
            raise access_refused_error(exc) from exc


def _mismatch(exc: ChannelPreconditionFailed, topology: Topology) -> TopologyMismatchError:
    reply = str(exc.args[0] if exc.args else exc)
    found = _INEQUIVALENT.search(reply)
    if found is None:
        return TopologyMismatchError(f"the broker refused a declaration: {reply}")
    kind, name, arg = found["kind"], found["name"], found["arg"]
    wanted = "?"
    specs = topology.queues if kind == "queue" else topology.exchanges
    for spec in specs:
        if spec.name == name:
            wanted = repr(arguments_of(spec).get(arg))
    current = found["current"]
    setting = _SETTING_OF_ARGUMENT.get(arg)
    fix = (
        f"move its messages away (e.g. with a shovel), delete the {kind} and start again so "
        "hopline declares it"
    )
    if setting is not None:
        fix += f", or set {setting} to match the existing {kind}"
    origin = " (so it was not declared by this hopline configuration)" if current == "none" else ""
    return TopologyMismatchError(
        f"{kind} {name!r} already exists with {arg} = {current}{origin}, but hopline declares "
        f"{arg} = {wanted}. Fix: {fix}."
    )
