"""aiormq's teardown, told apart from a cancelled caller.

When aiormq tears down a connection that died (a heartbeat timeout, a reset), it fails the
futures still pending on it (a publish's confirm, a channel's close, an ack's write) with
`CancelledError`. Raised into a task that nobody cancelled, that means "the connection is
gone", but a task that lets it through ends as if cancelled, silently, and an
`except Exception` does not stop it. In the half-open row of `make chaos` that ended every
events publisher of a process, and the status recorder's writer: all events after the
fault stayed unpublished or unrecorded while messages kept flowing.

    with connection_torn_down_as(BrokerUnavailableError):
        await exchange.publish(...)     # teardown -> BrokerUnavailableError; cancel -> cancel
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

__all__ = ["cancelled_by_caller", "connection_torn_down_as"]


def cancelled_by_caller() -> bool:
    """Whether the current task was asked to stop (task.cancel(), a timeout expiring)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@contextlib.contextmanager
def connection_torn_down_as(
    error: type[Exception] = ConnectionError, message: str = "the broker connection was lost"
) -> Iterator[None]:
    """Turn a `CancelledError` that no cancel of this task caused into `error(message)`."""
    try:
        yield
    except asyncio.CancelledError as exc:
        if cancelled_by_caller():
            raise
        raise error(message) from exc
