"""The connection a long-running service keeps: connect, then set up on it until done.

A producer's publisher and a status recorder both open a robust connection and then set
things up on it (declare the topology, open channels, consume). The broker can go away in
the middle of that, and the error is then whatever the library raised at that moment (a
closed channel, a reset socket, "no active transport"), not a hopline error. A loop that
waited only for hopline errors ended there: the task died unseen and the service never
set up again (a producer that never became ready, a recorder that never recorded, one
`broker.connection_lost` line with no `broker.connection_restored` after it).

So the set-up is tried again, on the same robust connection, until it succeeds: aio-pika
reconnects the connection by itself meanwhile, so the outage is the one line pair of
common.connection however long it lasts. A set-up that fails must close the channels it
opened itself: a robust connection reopens (and consumes on again) every channel not
closed on purpose, and a retry would then consume twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractRobustConnection
from structlog.typing import FilteringBoundLogger

from common.connection import connect
from common.errors import HoplineError
from common.settings import HoplineSettings
from common.tasks import close_within
from common.teardown import connection_torn_down_as

__all__ = ["connect_and_set_up"]


async def connect_and_set_up(
    settings: HoplineSettings,
    *,
    name: str,
    set_up: Callable[[AbstractRobustConnection], Awaitable[None]],
    retry_s: float,
    log: FilteringBoundLogger,
    waiting: str,
) -> AbstractRobustConnection:
    """A connection named `name` on which `set_up` has succeeded.

    Each failed attempt, to connect or to set up, is one `waiting` line with the error, and
    the next one comes `retry_s` later. Cancelled, it closes what it opened."""
    while True:
        try:
            connection = await connect(settings, name=name)
            break
        except HoplineError as exc:  # away, refused: said in one line, tried again
            log.warning(waiting, error=str(exc), retry_in_s=retry_s)
            await asyncio.sleep(retry_s)
    try:
        while True:
            try:
                # aiormq fails the set-up's pending calls with CancelledError when it tears
                # the connection down (common.teardown): a lost broker, not a cancel.
                with connection_torn_down_as():
                    await set_up(connection)
                return connection
            except Exception as exc:  # the broker left halfway, or refused a declaration
                reason = str(exc) if isinstance(exc, HoplineError) else _described(exc)
                log.warning(waiting, error=reason, retry_in_s=retry_s)
                await asyncio.sleep(retry_s)
    except BaseException:
        await close_within(connection.close(), f"{name} connection")
        raise


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
