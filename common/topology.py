"""The broker topology as data: frozen specs built by pure functions from settings.

`common.declare` is the only module that turns these specs into broker calls;
`common.definitions` turns the same specs into definitions JSON and a diagram.

Queue arguments depend on the broker version in one place: RabbitMQ 4 gives quorum queues a
default delivery limit of 20, so queues where nothing may ever be dropped (quarantine,
unroutable) ask for `x-delivery-limit = -1` (unlimited) there; RabbitMQ 3.x reads -1 as
"dead-letter on the first requeue" and has no default limit, so there we leave it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from common.delays import (
    DELAY_LEVELS,
    REQUEUE_TARGET,
    due_binding_key,
    level_bindings,
    level_ttl_ms,
)
from common.names import format_delay, routing_key
from common.settings import HoplineSettings

__all__ = [
    "BindingSpec",
    "BrokerVersion",
    "ExchangeSpec",
    "QueueSpec",
    "Topology",
    "arguments_of",
    "core_topology",
    "service_topology",
]

_T = TypeVar("_T")
ExchangeType = Literal["topic", "direct", "fanout", "headers"]
Arguments = tuple[tuple[str, Any], ...]  # hashable, so specs can be compared and deduplicated


@dataclass(frozen=True, slots=True, order=True)
class BrokerVersion:
    major: int
    minor: int = 0

    @classmethod
    def parse(cls, text: str | bytes | None) -> BrokerVersion:
        """`3.10.8` -> (3, 10); unknown versions are taken as the current release."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        try:
            major, minor, *_ = (text or "").split(".")
            return cls(int(major), int(minor))
        except ValueError:
            return CURRENT_RELEASE


CURRENT_RELEASE = BrokerVersion(4, 1)


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: ExchangeType
    argument_items: Arguments = ()
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    argument_items: Arguments = ()
    purpose: str = ""  # shown in the diagram and docs
    durable: bool = True


@dataclass(frozen=True, slots=True)
class BindingSpec:
    source: str
    destination: str
    routing_key: str = ""
    argument_items: Arguments = ()
    destination_type: Literal["queue", "exchange"] = "queue"


@dataclass(frozen=True, slots=True)
class Topology:
    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[BindingSpec, ...] = ()

    def __add__(self, other: Topology) -> Topology:
        return Topology(
            _unique(self.exchanges + other.exchanges),
            _unique(self.queues + other.queues),
            _unique(self.bindings + other.bindings),
        )

    def queue(self, name: str) -> QueueSpec:
        for spec in self.queues:
            if spec.name == name:
                return spec
        raise KeyError(name)


def arguments_of(spec: ExchangeSpec | QueueSpec | BindingSpec) -> dict[str, Any]:
    """A spec's x-arguments as the dict aio-pika and the definitions JSON take."""
    return dict(spec.argument_items)


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _frozen(arguments: Mapping[str, Any]) -> Arguments:
    return tuple(sorted(arguments.items()))


def _kept_forever_arguments(settings: HoplineSettings, version: BrokerVersion) -> Arguments:
    """Quarantine and unroutable: no TTL, no length limit, no delivery limit."""
    arguments: dict[str, Any] = {"x-queue-type": settings.queue_type}
    if settings.queue_type == "quorum" and version >= BrokerVersion(4, 0):
        arguments["x-delivery-limit"] = -1
    return _frozen(arguments)


def _delay_level_arguments(
    settings: HoplineSettings, level: int, version: BrokerVersion
) -> Arguments:
    names = settings.names
    arguments: dict[str, Any] = {
        "x-queue-type": settings.queue_type,
        "x-message-ttl": level_ttl_ms(level),
        "x-dead-letter-exchange": names.delay_level(level - 1) if level else names.delay_due,
    }
    if settings.queue_type == "quorum":
        # A message expiring from a level stays in it until the next one confirmed it.
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
        if version >= BrokerVersion(4, 0):
            arguments["x-delivery-limit"] = -1
    return _frozen(arguments)


def _work_queue_arguments(settings: HoplineSettings, service: str) -> Arguments:
    arguments: dict[str, Any] = {
        "x-queue-type": settings.queue_type,
        "x-dead-letter-exchange": settings.names.dlx,
        "x-dead-letter-routing-key": service,
    }
    if settings.queue_type == "quorum":
        # The broker itself quarantines a message that keeps killing its consumer.
        arguments["x-delivery-limit"] = settings.delivery_limit
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
    return _frozen(arguments)


def core_topology(settings: HoplineSettings, version: BrokerVersion = CURRENT_RELEASE) -> Topology:
    """What exists once per prefix, whatever services run: ingress, unroutable, the delay
    levels, requeue, dlx, events, the status recorder's copies of what the broker routes
    alone, and the status recorder's queue bound to every event
    (declared by everyone, so no event is routed nowhere before the first recorder starts;
    kept like quarantine: a deployment that runs no recorder turns events off,
    HOPLINE_EVENTS_ENABLED=false)."""
    names = settings.names
    exchanges = [
        ExchangeSpec(names.ingress, "topic", _frozen({"alternate-exchange": names.unroutable})),
        ExchangeSpec(names.unroutable, "fanout"),
        ExchangeSpec(names.requeue, "headers"),
        ExchangeSpec(names.dlx, "direct"),
        ExchangeSpec(names.events, "topic"),
    ]
    queues = [
        QueueSpec(
            names.unroutable,
            _kept_forever_arguments(settings, version),
            "messages whose routing key matched no binding",
        )
    ]
    bindings = [BindingSpec(names.unroutable, names.unroutable)]
    queues.append(
        QueueSpec(
            names.status,
            _kept_forever_arguments(settings, version),
            "lifecycle events waiting to be written to the status store",
        )
    )
    bindings.append(BindingSpec(names.events, names.status, "#"))
    core = Topology(tuple(exchanges), tuple(queues), tuple(bindings))
    return core + _broker_fate_topology(settings, version) + _delay_topology(settings, version)


def _broker_fate_topology(settings: HoplineSettings, version: BrokerVersion) -> Topology:
    """The status recorder's copies of what the broker routes alone, where no consumer
    could say what happened: every unroutable message, and what reaches the dead-letter
    exchange (bound per service in `service_topology`; the recorder keeps only the
    delivery-limit deaths). Both fanned out by the broker, so the operators' queues keep
    every message. Kept like `status`; declared only while events are on, since with events
    off the recorder does not read them and copies would pile up unread.
    """
    if not settings.events_enabled:
        return Topology()
    names = settings.names
    kept = _kept_forever_arguments(settings, version)
    queues = (
        QueueSpec(
            names.status_unroutable,
            kept,
            f"copies of unroutable messages: the status recorder says `unroutable` for each "
            f"(the messages themselves stay in {names.unroutable})",
        ),
        QueueSpec(
            names.status_dead_letters,
            kept,
            "copies of dead-lettered messages: the status recorder says `quarantined` for the "
            "broker's delivery-limit deaths (the messages themselves are in quarantine)",
        ),
    )
    return Topology((), queues, (BindingSpec(names.unroutable, names.status_unroutable),))


def _delay_topology(settings: HoplineSettings, version: BrokerVersion) -> Topology:
    """The binary delay levels (common.delays): entry, 28 levels, and `due`.

    Every delay exchange has the unroutable exchange as its alternate, so a malformed key
    from a foreign publisher, or a scheduled type no service subscribes to, is kept there.
    """
    names = settings.names
    keep_unroutable = _frozen({"alternate-exchange": names.unroutable})
    top = DELAY_LEVELS - 1
    exchanges = [ExchangeSpec(names.delay, "topic", keep_unroutable)]
    queues: list[QueueSpec] = []
    bindings = [BindingSpec(names.delay, names.delay_level(top), "#", (), "exchange")]
    for level in reversed(range(DELAY_LEVELS)):
        name = names.delay_level(level)
        after = names.delay_level(level - 1) if level else names.delay_due
        exchanges.append(ExchangeSpec(name, "topic", keep_unroutable))
        queues.append(
            QueueSpec(
                name,
                _delay_level_arguments(settings, level, version),
                f"delay level {level}: waits {format_delay(2**level)}, then on to {after}",
            )
        )
        into_queue, onwards = level_bindings(level)
        bindings.append(BindingSpec(name, name, into_queue))
        bindings.append(BindingSpec(name, after, onwards, (), "exchange"))
    exchanges.append(ExchangeSpec(names.delay_due, "topic", keep_unroutable))
    # A retry's copy goes back to exactly its queue, as `x-hopline-queue` says.
    bindings.append(
        BindingSpec(names.delay_due, names.requeue, due_binding_key(REQUEUE_TARGET), (), "exchange")
    )
    return Topology(tuple(exchanges), tuple(queues), tuple(bindings))


def service_topology(
    settings: HoplineSettings,
    service: str,
    type_patterns: Iterable[str],
    version: BrokerVersion = CURRENT_RELEASE,
) -> Topology:
    """A service's work queue per priority, its bindings, and its quarantine queue."""
    names = settings.names
    patterns = tuple(dict.fromkeys(type_patterns))
    queues: list[QueueSpec] = []
    bindings: list[BindingSpec] = []
    for priority in settings.priorities:
        queue = names.work_queue(service, priority)
        queues.append(
            QueueSpec(
                queue,
                _work_queue_arguments(settings, service),
                f"{service}: {priority}-priority work",
            )
        )
        for pattern in patterns:
            key = routing_key(priority, pattern)
            bindings.append(BindingSpec(names.ingress, queue, key))
            # A scheduled message reaches the same queues as a direct one, when it is due.
            bindings.append(BindingSpec(names.delay_due, queue, due_binding_key(key)))
        # Retries and replays come back to exactly this queue, whatever their routing key.
        bindings.append(
            BindingSpec(
                names.requeue,
                queue,
                "",
                _frozen({"x-match": "all-with-x", "x-hopline-queue": queue}),
            )
        )
    quarantine = names.quarantine(service)
    queues.append(
        QueueSpec(
            quarantine,
            _kept_forever_arguments(settings, version),
            f"{service}: failed messages awaiting a person's decision",
        )
    )
    bindings.append(BindingSpec(names.dlx, quarantine, service))
    if settings.events_enabled:
        # The recorder's copy: nobody else sees the broker quarantine a crash-looping message.
        bindings.append(BindingSpec(names.dlx, names.status_dead_letters, service))
    return core_topology(settings, version) + Topology((), tuple(queues), tuple(bindings))
