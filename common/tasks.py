"""Background tasks a component owns: cancelled, and waited for, in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable

from common.logging import get_logger

__all__ = ["cancel_all", "close_within"]

_log = get_logger("hopline")

# How long a shutdown waits for one step (tasks to end, a connection to close) before it
# goes on without it: a task stuck in a library call must not hang the whole process.
_SHUTDOWN_STEP_S = 5.0


async def cancel_all(
    tasks: Iterable[asyncio.Task[None]], timeout_s: float = _SHUTDOWN_STEP_S
) -> None:
    """Cancel every task, then wait until each has finished (at most `timeout_s`)."""
    owned = list(tasks)
    for task in owned:
        task.cancel()
    if not owned:
        return
    _, pending = await asyncio.wait(owned, timeout=timeout_s)
    for task in owned:
        if task.done() and not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                task.exception()  # retrieved: a failure at shutdown is not worth a warning
    if pending:
        _log.warning(
            "shutdown.tasks_left",
            tasks=sorted(task.get_name() for task in pending),
            waited_s=timeout_s,
            detail="they did not end when cancelled; the process goes on without them",
        )


async def close_within(closing: Awaitable[object], what: str) -> None:
    """Await a close (a connection's) for at most one shutdown step."""
    try:
        async with asyncio.timeout(_SHUTDOWN_STEP_S):
            await closing
    except TimeoutError:
        _log.warning("shutdown.close_timed_out", what=what, waited_s=_SHUTDOWN_STEP_S)
