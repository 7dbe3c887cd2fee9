"""The recorder's watch on what the broker routes alone: its copies of unroutable and
dead-lettered messages, turned into lifecycle events (common.status.broker_fates decides).

Each copy's event is published to `<prefix>.events` with a publisher confirm, and only then
is the copy acked: killed at any moment, the watch loses no event (an unacked copy comes
back; an event published twice changes nothing in the monotone store). Publishing through
the events exchange rather than writing the store directly lets every other subscriber see
these events too, and the status queue records them like any other.

    event confirmed              -> copy acked
    no event (a consumer's own quarantine copy or reject fallback: it spoke already)
                                 -> copy acked
    no message_id                -> copy acked, counted, one `status.fate_without_id` line
                                    each (the message itself stays in its queue)
    a copy that cannot be read   -> copy acked, logged whole as `status.fate_unreadable`
    event not confirmed          -> copy requeued after `retry_s` (its queue has no delivery
                                    limit), one `status.fate_unpublished` line until it works
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from common.events import Event, event_routing_key
from common.logging import get_logger
from common.settings import HoplineSettings
from common.status.broker_fates import (
    BrokerFate,
    NoMessageId,
    delivery_limit_event,
    unroutable_event,
)
from common.tasks import close_within
from common.topology import Topology

__all__ = ["BrokerWatch"]

_log = get_logger("hopline.status")

Decide = Callable[[AbstractIncomingMessage, datetime], BrokerFate]


class BrokerWatch:
    def __init__(
        self, settings: HoplineSettings, *, prefetch: int = 32, retry_s: float = 1.0
    ) -> None:
        self._settings = settings
        self._prefetch = prefetch
        self._retry_s = retry_s
        self._channel: AbstractChannel | None = None
        self._failing = False
        self.settled = 0  # copies acked, with or without an event
        self.emitted = 0
        self.without_id = 0

    async def attach(self, connection: AbstractConnection, topology: Topology) -> None:
        """Consume both copy queues of `topology` on a channel of their own, which also
        publishes the events (declared through the channel, so a robust connection
        declares them again when it reopens)."""
        names = self._settings.names
        priorities = tuple(self._settings.priorities)

        def unroutable(message: AbstractIncomingMessage, now: datetime) -> BrokerFate:
            return unroutable_event(message, priorities, names.unroutable, now)

        def dead_letter(message: AbstractIncomingMessage, now: datetime) -> BrokerFate:
            return delivery_limit_event(message, priorities, now)

        channel = self._channel = await connection.channel(publisher_confirms=True)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            for name, decide in (
                (names.status_unroutable, unroutable),
                (names.status_dead_letters, dead_letter),
            ):
                spec = topology.queue(name)
                queue = await channel.declare_queue(
                    spec.name, durable=True, arguments=dict(spec.argument_items)
                )
                await queue.consume(self._consumer(decide))
        except BaseException:
            # Closed on purpose: the robust connection must not reopen it beside the
            # channel of the next attempt (common.service_connection).
            await close_within(channel.close(), "broker watch channel")
            raise

    def _consumer(self, decide: Decide) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def arrived(message: AbstractIncomingMessage) -> None:
            try:
                fate = decide(message, datetime.now(UTC))
            except Exception:  # a copy no waiting makes readable: said once, then let go
                _log.exception(
                    "status.fate_unreadable",
                    message_id=message.message_id,
                    routing_key=message.routing_key,
                )
                fate = None
            await self._handle(message, fate)

        return arrived

    async def _handle(self, message: AbstractIncomingMessage, fate: BrokerFate) -> None:
        if isinstance(fate, Event) and not await self._published(fate):
            await asyncio.sleep(self._retry_s)
            with contextlib.suppress(Exception):  # channel gone: redelivered anyway
                await message.nack(requeue=True)
            return
        if isinstance(fate, NoMessageId):
            self.without_id += 1
            _log.warning(
                "status.fate_without_id",
                lifecycle_event=fate.event,
                routing_key=fate.routing_key,
                without_id=self.without_id,
                detail="no message_id, so its status cannot be looked up; the message "
                "itself is kept in its queue",
            )
        with contextlib.suppress(Exception):  # channel gone: redelivered, said again: harmless
            await message.ack()
            self.settled += 1

    async def _published(self, event: Event) -> bool:
        channel = self._channel
        assert channel is not None  # opened before anything is consumed on it
        try:
            exchange = await channel.get_exchange(self._settings.names.events, ensure=False)
            await exchange.publish(
                aio_pika.Message(
                    event.to_json(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                event_routing_key(event.service, event.event),  # source: its service
                timeout=self._settings.publish_timeout_s,
            )
        except Exception as exc:  # refused, timed out, channel closed: tried again later
            if not self._failing:
                self._failing = True
                _log.warning(
                    "status.fate_unpublished",
                    lifecycle_event=event.event,
                    error=f"{type(exc).__name__}: {exc}",
                    action=f"the copy is requeued and tried again every {self._retry_s:g} s",
                )
            return False
        if self._failing:
            self._failing = False
            _log.warning("status.fate_published_again")
        self.emitted += 1
        return True
