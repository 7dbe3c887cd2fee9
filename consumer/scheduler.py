"""Deliveries waiting for a free handler slot, highest priority first, FIFO within one.

Each priority queue has its own channel and prefetch, so a flood of low-priority work can
fill only its own prefetch window: a high-priority delivery still arrives at once and takes
the next free slot, so it waits at most for one running handler to finish.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Generic, TypeVar

__all__ = ["PriorityBuffer"]

_T = TypeVar("_T")


class PriorityBuffer(Generic[_T]):
    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[tuple[int, int, _T]] = asyncio.PriorityQueue()
        self._sequence = itertools.count()

    def put(self, rank: int, item: _T) -> None:
        """`rank` 0 is the highest priority."""
        self._queue.put_nowait((rank, next(self._sequence), item))

    async def get(self) -> _T:
        return (await self._queue.get())[2]

    def done(self) -> None:
        """Mark one item from `get` as handled."""
        self._queue.task_done()

    async def drained(self) -> None:
        """Wait until every item put has been handled."""
        await self._queue.join()

    def __len__(self) -> int:
        return self._queue.qsize()
