"""Crash-loop isolation: a message that kills its consumer ends in quarantine alone.

When a consumer process dies (`os._exit`, an OOM kill, a segfault in a C extension), every
delivery it held unacked goes back to its queue, and a quorum queue counts one more delivery
for each of them; at `x-delivery-limit` the broker dead-letters a message to quarantine. Run
carelessly, a message that crashes the process on every attempt would take its neighbours
there too: those that merely sat in the prefetch window, and those whose handler had finished
but whose ack was still being coalesced. Two rules keep the count on the suspect alone:

1. **Probation at start** (`probation`). Before a worker consumes, it takes the redelivered
   messages of each of its queues one at a time with `basic.get`, highest priority first.
   Each runs alone, and its ack is on the wire before the next one is fetched, so a crash
   counts against that one message only. Returned messages are delivered before any other,
   so probation ends at the first fresh message (handled alone too) or an empty queue. A
   consumer restarted by its supervisor after a crash therefore finds the culprit without
   counting anything else, and only the culprit reaches the delivery limit.
2. **Redelivered deliveries run exclusively** (`SuspectGate`). A redelivered delivery that
   arrives while consuming (another consumer crashed, or a connection was lost) waits until no
   other handler runs, with every finished handler's ack flushed, and no other handler starts
   until it is settled and its ack flushed. What remains exposed are the deliveries already
   read into this consumer's prefetch window but not started; they are counted once per
   crash they witness, and are themselves run alone when they come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

__all__ = ["SuspectGate", "probation"]


class SuspectGate:
    """Ordinary deliveries run side by side; a suspect runs when none runs, and alone.

    Suspects waiting go first: once one waits, no ordinary delivery starts until every
    waiting suspect has run.
    """

    def __init__(self) -> None:
        self._running = 0
        self._suspects = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._clear = asyncio.Event()  # no suspect waiting or running
        self._clear.set()
        self._alone = asyncio.Lock()

    async def enter(self) -> None:
        """Before an ordinary delivery's handler; pair with `leave()`."""
        while not self._clear.is_set():
            await self._clear.wait()
        self._running += 1
        self._idle.clear()

    def leave(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    async def enter_alone(self) -> None:
        """Before a suspect's handler: returns when nothing else runs; pair with
        `leave_alone()`."""
        self._suspects += 1
        self._clear.clear()
        try:
            await self._alone.acquire()
        except BaseException:  # cancelled while another suspect ran
            self._left_alone()
            raise
        try:
            await self._idle.wait()
        except BaseException:  # cancelled while ordinary handlers finished
            self.leave_alone()
            raise

    def leave_alone(self) -> None:
        self._alone.release()
        self._left_alone()

    def _left_alone(self) -> None:
        self._suspects -= 1
        if self._suspects == 0:
            self._clear.set()


async def probation(
    channel: AbstractChannel,
    queue: str,
    run_alone: Callable[[DeliveredMessage], Awaitable[None]],
) -> int:
    """Run `queue`'s redelivered messages one at a time, then its first fresh one; how many
    redelivered messages ran. `run_alone` must settle the message and flush its ack."""
    suspects = 0
    while True:
        raw = await channel.basic_get(queue, no_ack=False)
        if not isinstance(raw.delivery, Basic.GetOk):  # basic.get-empty
            return suspects
        redelivered = bool(raw.delivery.redelivered)
        await run_alone(raw)
        if not redelivered:
            return suspects
        suspects += 1
