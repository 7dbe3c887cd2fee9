"""The status recorder: lifecycle events from `<prefix>.status` into the status store.

It consumes the durable status queue (bound to `<prefix>.events` with `#`) and writes what
it receives in batches, each in one transaction; a delivery is acked only once its batch is
written. When the store is away (PostgreSQL down, the SQLite file locked or unwritable) it
keeps the batch, acks nothing, and writes it again every `retry_s`: the prefetch window
stops further deliveries, so the events wait in their queue, and are recorded when the
store is back. Killed at any moment, it loses nothing: unacked events are redelivered,
and recording one twice changes nothing (common.status.states).

An event that cannot be read at all is logged as `status.invalid_event` with its body's
start and acked: it would never become readable by waiting.

With events on, the recorder also keeps the broker watch (common.status.watch): it says
`unroutable` and delivery-limit `quarantined` for messages no hopline process saw end,
since the recorder is the one process every deployment with a status store runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from common.connection import broker_version
from common.declare import declare_topology
from common.errors import StatusUnavailableError
from common.events import Event, InvalidEventError
from common.logging import get_logger
from common.service_connection import connect_and_set_up
from common.settings import HoplineSettings
from common.status.store import StatusStore
from common.status.watch import BrokerWatch
from common.tasks import cancel_all, close_within
from common.topology import core_topology

__all__ = ["Recorder"]

_log = get_logger("hopline.status")


class Recorder:
    def __init__(
        self,
        settings: HoplineSettings,
        store: StatusStore,
        *,
        name: str = "hopline-recorder",
        batch_max: int = 500,
        linger_s: float = 0.02,
        retry_s: float = 1.0,
        prune_every_s: float = 3600.0,
    ) -> None:
        self._settings = settings
        self._store = store
        self._name = name
        self._batch_max = batch_max
        self._linger_s = linger_s
        self._retry_s = retry_s
        self._prune_every_s = prune_every_s
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._connection: AbstractRobustConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.recorded = 0
        self.watch = BrokerWatch(settings, retry_s=retry_s) if settings.events_enabled else None

    async def start(self) -> None:
        """Connect and consume in the background (a broker that is away is waited for)."""
        self._tasks = [
            asyncio.create_task(self._consume_until_closed(), name=f"{self._name}-consume"),
            asyncio.create_task(self._write_forever(), name=f"{self._name}-write"),
            asyncio.create_task(self._prune_forever(), name=f"{self._name}-prune"),
        ]

    async def close(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self._connection is not None:
            await close_within(self._connection.close(), "status recorder connection")
            self._connection = None

    async def _consume_until_closed(self) -> None:
        self._connection = await connect_and_set_up(
            self._settings,
            name=self._name,
            set_up=self._subscribe,
            retry_s=self._retry_s,
            log=_log,
            waiting="status.recorder_waiting",
        )

    async def _subscribe(self, connection: AbstractRobustConnection) -> None:
        topology = core_topology(self._settings, broker_version(connection))
        await declare_topology(connection, topology)
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self._batch_max * 2)
            spec = topology.queue(self._settings.names.status)
            # Declared through the channel, so aio-pika declares it again when it reopens.
            queue = await channel.declare_queue(
                spec.name, durable=True, arguments=dict(spec.argument_items)
            )
            await queue.consume(self._arrived)
            if self.watch is not None:
                await self.watch.attach(connection, topology)
        except BaseException:
            # Closed on purpose, so the robust connection does not reopen it and consume
            # beside the next attempt's channel (common.service_connection).
            await close_within(channel.close(), "status recorder channel")
            raise
        _log.info("status.recorder_started", queue=spec.name)

    async def _arrived(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        batch = [await self._inbox.get()]
        deadline = asyncio.get_running_loop().time() + self._linger_s
        while len(batch) < self._batch_max:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and self._inbox.empty():
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), max(remaining, 0)))
            except TimeoutError:
                break
        return batch

    async def _write_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            events = []
            for message in batch:
                try:
                    events.append(Event.from_json(message.body))
                except InvalidEventError as exc:
                    _log.error(
                        "status.invalid_event",
                        error=str(exc),
                        routing_key=message.routing_key,
                        body=message.body[:200].decode("utf-8", "replace"),
                    )
            await self._write(events)
            # One ack for the batch: deliveries come in order, so every one up to the last
            # is in this batch or an earlier one (an ack per message was a tenth of the
            # recorder's time). A channel gone meanwhile redelivers them: harmless.
            with contextlib.suppress(Exception):
                await batch[-1].ack(multiple=True)
            self.recorded += len(events)

    async def _write(self, events: list[Event]) -> None:
        """Write until the store takes it; one line when it goes away, one when it is back.

        A batch the store refuses for another reason (a bug, a value it cannot hold) is
        written one event at a time, and an event that still fails is logged whole as
        `status.event_not_recorded`: one bad event must not stop every other one."""
        waited = False
        while True:
            try:
                await self._store.record(events)
            except StatusUnavailableError as exc:
                if not waited:
                    waited = True
                    _log.error(
                        "status.store_unavailable",
                        error=str(exc),
                        consequence="events wait in their queue until the store is back",
                    )
                await asyncio.sleep(self._retry_s)
                continue
            except Exception:
                if len(events) > 1:
                    for event in events:
                        await self._write([event])
                    return
                _log.exception("status.event_not_recorded", event=events[0].to_json().decode())
                return
            if waited:
                _log.warning("status.store_back", recorded=len(events))
            return

    async def _prune_forever(self) -> None:
        while True:
            try:
                pruned = await self._store.prune(datetime.now(UTC))
            except StatusUnavailableError as exc:
                _log.warning("status.prune_failed", error=str(exc))
            else:
                if pruned:
                    _log.info("status.pruned", messages=pruned)
            await asyncio.sleep(self._prune_every_s)
