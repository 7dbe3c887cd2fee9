"""Handler slots: at most `limit` handlers at once; a freed slot goes to the highest priority.

Every delivery already runs in a task of its own (aiormq starts one per message), so a
delivery that finds a free slot runs at once, in that task, with no hand-over to a pool of
worker tasks. Only when every slot is busy does it wait, and then the next slot that frees up
goes to the waiting delivery of the highest priority (rank 0), first come first served within
one priority. A delivery below the highest priority yields to the event loop once before it
takes a slot, so a higher one that arrived in the same batch goes first. Each priority queue
has its own channel and prefetch, so a flood of low-priority work can fill only its own
window: a high-priority delivery waits at most for one running handler to finish.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["PrioritySlots"]


class PrioritySlots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._busy = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()

    async def acquire(self, rank: int) -> None:
        """Take a slot; `rank` 0 is the highest priority. Pair with `release()`."""
        if rank:
            # Below the highest priority, step back once: a higher-priority delivery read off
            # the socket in the same batch then starts first instead of queueing behind this
            # batch's lower ones (bench/README.md has the measured effect).
            await asyncio.sleep(0)
        if self._busy < self._limit:
            self._busy += 1
            self._idle.clear()
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, next(self._sequence), future))
        try:
            await future  # `release()` handed its slot over: `_busy` already counts us
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed over, then cancelled before we could run: pass it on
            raise

    def release(self) -> None:
        """Free a slot: it goes to the highest-priority waiter, if any."""
        while self._waiting:
            future = heapq.heappop(self._waiting)[2]
            if not future.done():  # a cancelled waiter left its future behind
                future.set_result(None)
                return
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def busy(self) -> int:
        return self._busy

    def __len__(self) -> int:
        """How many deliveries wait for a slot."""
        return sum(1 for _, _, future in self._waiting if not future.done())

    async def drained(self) -> None:
        """Wait until no slot is busy and nobody waits."""
        await self._idle.wait()
