"""Handler time limits, enforced by one periodic sweep instead of one timer per message.

`asyncio.timeout` schedules a timer and cancels it again for every message, a cost that
shows in a drain (bench/README.md). Here starting a limit is one dict entry; a sweep every
`resolution_s` cancels the tasks past their limit, so a limit is enforced at most
`resolution_s` late, which is nothing next to handler timeouts of seconds.

The sweep cancels the task the handler runs in, the way `asyncio.timeout` does; `finish()`
tells whether that happened and takes the cancellation back (`Task.uncancel`), so the task
goes on to settle the message. A cancellation from elsewhere (shutdown) is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Deadlines"]


class Deadlines:
    def __init__(self, resolution_s: float = 0.05) -> None:
        self._resolution_s = resolution_s
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self, timeout_s: float) -> asyncio.Task[object]:
        """The current task must finish within `timeout_s`; pair with `finish()`."""
        task = asyncio.current_task()
        assert task is not None, "Deadlines.start() outside a task"
        loop = task.get_loop()
        self._due[task] = loop.time() + timeout_s
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep(), name="hopline-deadlines")
        return task

    def finish(self, task: asyncio.Task[object]) -> bool:
        """Stop watching `task`; True if its limit passed and the sweep cancelled it."""
        del self._due[task]
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._resolution_s)
            now = loop.time()
            for task, due in list(self._due.items()):
                if due <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
