"""Acks of finished deliveries, coalesced per channel and event-loop turn.

Acks are coalesced (`AckBatcher`): a delivery is marked for ack only once its handler finished
(or its copy was confirmed), and within one event-loop turn the marked deliveries of a channel
go out as one `basic.ack(multiple=True)` for the longest run of consecutive delivery tags that
are all settled, plus a single `basic.ack` for each marked one behind a still-running
handler. So no message is acked before it was handled, and a slow handler never holds back
the acks of the others (which would stall the prefetch window).

With lifecycle events on, a flush first waits until the events emitted so far are confirmed
(`EventGate`, common.emitter): a delivery's events are emitted in the same event-loop turn
as its mark, so its ack never goes out before its events are safe in the broker. A consumer
killed with events still in its buffer then leaves their deliveries unacked: the broker
redelivers them and their events come again, where an early ack lost them for good (the
status store then said "processing" of a message that had succeeded). The wait is for one
batch of confirms, off the handler slots; it is no wait at all while events cannot be
published (common.emitter), so a broker that refuses events never holds messages back.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Protocol

import aiormq.abc

from common.logging import get_logger

__all__ = ["AckBatcher", "AckWindow", "EventGate"]

_log = get_logger("hopline.consumer")


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


class EventGate(Protocol):
    """What acks wait for: the confirms of the lifecycle events emitted so far."""

    @property
    def emitted(self) -> int: ...

    async def confirmed(self, seq: int) -> None: ...


class AckBatcher:
    """Sends the acks of finished deliveries, coalesced per channel and event-loop turn."""

    def __init__(self, gate: EventGate | None = None) -> None:
        self._gate = gate
        self._windows: dict[aiormq.abc.AbstractChannel, AckWindow] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One flush at a time: a caller that must know its acks are on the wire (before a
        # suspect runs, see consumer.isolation) waits for the flush already sending them.
        self._flushing = asyncio.Lock()

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
        """Send every ack marked so far; returns once they are written to the socket."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        plans = [
            (channel, window.take())
            for channel, window in list(self._windows.items())
            if window.marked
        ]
        if plans and self._gate is not None:
            await self._gate.confirmed(self._gate.emitted)
        for channel, (upto, singles) in plans:
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
            async with self._flushing:  # never cancelled halfway: its taken acks would be lost
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
