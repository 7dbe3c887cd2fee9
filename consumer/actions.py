"""Carry out a decision on a delivery: ack, or confirm a copy somewhere else and then ack.

If the copy cannot be confirmed, the delivery is rejected without requeue, one message at a
time (`basic.reject`), and the broker dead-letters it to quarantine itself: a message is
never acked before it is safe elsewhere, and never requeued to spin.

Acks are coalesced (`AckBatcher`): a delivery is marked for ack only once its handler finished
(or its copy was confirmed), and within one event-loop turn the marked deliveries of a channel
go out as one `basic.ack(multiple=True)` for the longest run of consecutive delivery tags that
are all settled, plus a single `basic.ack` for each marked one behind a still-running
handler. So no message is acked before it was handled, and a slow handler never holds back
the acks of the others (which would stall the prefetch window).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractExchange

from common.copies import failure_copy, retry_copy
from common.logging import get_logger
from common.names import Names
from consumer.delivery import Delivery
from consumer.policy import Outcome, Quarantine, Retry

__all__ = ["AckBatcher", "AckWindow", "DeliveryContext", "Settler"]

_log = get_logger("hopline.consumer")


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What we know of a delivery before its handler runs."""

    origin_queue: str
    original_routing_key: str
    attempt: int
    message_type: str | None
    message_id: str | None


# Past this many settled tags above a stuck floor (a delivery never settled, e.g. a crashed
# slot), a channel's window stops coalescing and acks one by one: memory stays bounded.
_MAX_SETTLED_ABOVE_FLOOR = 10_000


@dataclass(slots=True)
class AckWindow:
    """Which delivery tags of one channel can be acked now, and how; pure bookkeeping.

    Delivery tags of a channel are 1, 2, 3, ... in delivery order. `floor` is the highest tag
    such that every tag up to it is settled. `take()` returns the tag up to which one
    `basic.ack(multiple=True)` is safe (every tag in between is either marked for ack now or
    already settled individually) and the marked tags beyond a gap, to ack one by one.
    """

    floor: int = 0
    marked: set[int] = field(default_factory=set)
    settled: set[int] = field(default_factory=set)
    coalescing: bool = True

    def mark(self, tag: int) -> None:
        """The delivery with `tag` may be acked (its handler finished or its copy is safe)."""
        self.marked.add(tag)

    def settle(self, tag: int) -> None:
        """The delivery with `tag` was settled individually (rejected or acked alone)."""
        if self.coalescing and tag > self.floor:
            self.settled.add(tag)

    def take(self) -> tuple[int | None, list[int]]:
        """(tag for one ack with multiple=True or None, tags to ack singly); clears marks."""
        if not self.coalescing:
            singles = sorted(self.marked)
            self.marked.clear()
            return None, singles
        upto = None
        tag = self.floor + 1
        while True:
            if tag in self.marked:
                self.marked.discard(tag)
                upto = tag
            elif tag in self.settled:
                self.settled.discard(tag)
            else:
                break
            tag += 1
        self.floor = tag - 1
        singles = sorted(self.marked)
        self.marked.clear()
        self.settled.update(singles)
        if len(self.settled) > _MAX_SETTLED_ABOVE_FLOOR:
            self.coalescing = False
            self.settled.clear()
        return upto, singles


class AckBatcher:
    """Sends the acks of finished deliveries, coalesced per channel and event-loop turn."""

    def __init__(self) -> None:
        self._windows: dict[aiormq.abc.AbstractChannel, AckWindow] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hopline-acks")

    def mark(self, channel: aiormq.abc.AbstractChannel, delivery_tag: int) -> bool:
        """Ack `delivery_tag` soon; False if its channel is gone (the broker will redeliver)."""
        if channel.is_closed:
            return False
        window = self._windows.get(channel)
        if window is None:
            window = self._windows[channel] = AckWindow()
        window.mark(delivery_tag)
        self._wakeup.set()
        return True

    def settled(self, channel: aiormq.abc.AbstractChannel, delivery_tag: int) -> None:
        """`delivery_tag` was settled on its own (rejected): later runs may pass over it."""
        window = self._windows.get(channel)
        if window is not None:
            window.settle(delivery_tag)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send every ack marked so far."""
        for channel, window in list(self._windows.items()):
            if not window.marked:
                continue
            upto, singles = window.take()
            try:
                if upto is not None:
                    await channel.basic_ack(upto, multiple=True)
                for tag in singles:
                    await channel.basic_ack(tag)
            except Exception as exc:  # a lost channel: the broker redelivers what it had
                _log.warning(
                    "settle.failed",
                    error=f"{type(exc).__name__}: {exc}",
                    consequence="the broker redelivers the unacked messages of the channel",
                )
                self._windows.pop(channel, None)
        for channel in [c for c in self._windows if c.is_closed]:
            del self._windows[channel]

    async def close(self) -> None:
        """Send what is marked, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class Settler:
    """Publishes retry and quarantine copies with confirms on its own channel; acks through
    the `AckBatcher`."""

    def __init__(
        self,
        channel: AbstractChannel,
        names: Names,
        *,
        service: str,
        consumer_name: str,
        publish_timeout_s: float,
        acks: AckBatcher,
    ) -> None:
        self._acks = acks
        self._channel = channel
        self._names = names
        self._service = service
        self._consumer_name = consumer_name
        self._timeout_s = publish_timeout_s
        self._retry: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None

    async def open(self) -> None:
        self._retry = await self._channel.get_exchange(self._names.retry, ensure=False)
        self._dlx = await self._channel.get_exchange(self._names.dlx, ensure=False)

    def ack(self, delivery: Delivery) -> bool:
        """Mark for ack (sent within this event-loop turn); False if the channel is gone."""
        if self._acks.mark(delivery.channel, delivery.delivery_tag):
            return True
        _log.warning(
            "settle.failed",
            delivery_tag=delivery.delivery_tag,
            error="the delivery's channel is closed",
            consequence="the broker redelivers the message",
        )
        return False

    async def retry(
        self,
        delivery: Delivery,
        decision: Retry,
        context: DeliveryContext,
        outcome: Outcome,
    ) -> bool:
        assert self._retry is not None, "Settler.open() was not awaited"
        copy = retry_copy(
            delivery,
            origin_queue=context.origin_queue,
            original_routing_key=context.original_routing_key,
            next_attempt=decision.next_attempt,
            message_type=context.message_type,
            message_id=context.message_id,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
        )
        tier = self._names.retry_queue(decision.delay_s)
        return await self._forward(delivery, self._retry, copy, tier)

    async def quarantine(
        self,
        delivery: Delivery,
        decision: Quarantine,
        context: DeliveryContext,
        outcome: Outcome,
    ) -> bool:
        assert self._dlx is not None, "Settler.open() was not awaited"
        copy = failure_copy(
            delivery,
            origin_queue=context.origin_queue,
            original_routing_key=context.original_routing_key,
            attempt=context.attempt,
            message_type=context.message_type,
            message_id=context.message_id,
            error_type=outcome.error_type,
            error_message=outcome.error_message,
            traceback=outcome.traceback,
            reason=decision.reason,
            consumer=self._consumer_name,
        )
        return await self._forward(delivery, self._dlx, copy, self._service)

    async def _forward(
        self,
        delivery: Delivery,
        exchange: AbstractExchange,
        copy: aio_pika.Message,
        routing_key: str,
    ) -> bool:
        """Confirm the copy, then ack; if the copy fails, reject so the broker quarantines."""
        try:
            await exchange.publish(copy, routing_key, mandatory=True, timeout=self._timeout_s)
        except Exception as exc:  # any failure means "not confirmed"; the broker takes over
            _log.warning(
                "copy.not_confirmed",
                exchange=exchange.name,
                routing_key=routing_key,
                error=f"{type(exc).__name__}: {exc}",
                fallback="reject to the dead-letter exchange",
            )
            if await _reject(delivery):
                self._acks.settled(delivery.channel, delivery.delivery_tag)
            return False
        return self.ack(delivery)


async def _reject(delivery: Delivery) -> bool:
    """Reject without requeue (the broker dead-letters it); a lost channel only means the
    broker will redeliver."""
    try:
        await delivery.channel.basic_reject(delivery.delivery_tag, requeue=False)
    except Exception as exc:
        _log.warning(
            "settle.failed",
            delivery_tag=delivery.delivery_tag,
            error=f"{type(exc).__name__}: {exc}",
            consequence="the broker redelivers the message",
        )
        return False
    return True
