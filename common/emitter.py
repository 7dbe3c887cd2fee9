"""Publish lifecycle events to `<prefix>.events` in batches, off the hot path.

`emit()` only appends to a buffer; a background task publishes what is buffered in
batches, with publisher confirms, on a connection of its own (so a slow or blocked event
publish never holds up a message's ack or its retry copy). Nothing is dropped silently:

    publish confirmed            -> gone from the buffer
    refused, timed out, no link  -> kept at the head of the buffer, tried again after
                                    `retry_s`; one `events.unpublished` line when this
                                    starts and one `events.published_again` when it ends
    buffer over `high_water`     -> `room()` waits until it is published down to half of
      while the broker takes them   that: a consumer starts no new handler meanwhile, so it
                                    runs at the pace its events can be published instead of
                                    piling them up in memory (acks are never held)
    buffer over `max_pending`    -> only while events cannot be published at all (`room()`
                                    does not wait then: messages keep flowing): the oldest
                                    event is dropped, counted, and logged as `events.dropped`

Every event gets a sequence number (`emitted` counts them); `confirmed(seq)` waits until
every event up to `seq` is confirmed. A consumer's acks wait for it (consumer.acks), so a
consumer killed with events in its buffer has its deliveries redelivered, and their events
sent again, instead of acked with their events lost. It does not wait while events cannot
be published at all: a broker that takes no events never holds messages back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from pamqp.commands import Basic

from common.batch_publish import publish_batch
from common.connection import connect
from common.errors import HoplineError
from common.events import Event, event_routing_key
from common.logging import get_logger
from common.settings import HoplineSettings
from common.tasks import cancel_all, close_within
from common.teardown import connection_torn_down_as

__all__ = ["EventEmitter"]

_log = get_logger("hopline.events")


_PROPERTIES = Basic.Properties(
    content_type="application/json", delivery_mode=2, message_id="hopline.event"
)


@dataclass(frozen=True, slots=True)
class _Pending:
    seq: int
    routing_key: str
    body: bytes


class EventEmitter:
    def __init__(
        self,
        settings: HoplineSettings,
        *,
        name: str,
        max_batch: int = 250,
        batches_in_flight: int = 4,
        high_water: int = 5_000,
        max_pending: int = 100_000,
        retry_s: float = 1.0,
    ) -> None:
        self._settings = settings
        self._name = name
        self._max_batch = max_batch
        self._batches_in_flight = batches_in_flight
        self._opening = asyncio.Lock()
        self._high_water = high_water
        self._max_pending = max_pending
        self._room = asyncio.Event()
        self._room.set()
        self._retry_s = retry_s
        self._buffer: collections.deque[_Pending] = collections.deque()
        self._in_flight = 0
        self._in_flight_from: list[int] = []  # the first sequence number of each batch
        self._emitted = 0
        self._progress = asyncio.Event()  # replaced each time it is set
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        self.published = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events emitted and not yet confirmed by the broker."""
        return len(self._buffer) + self._in_flight

    @property
    def emitted(self) -> int:
        """How many events were emitted so far: the sequence number of the last one."""
        return self._emitted

    def confirmed_through(self) -> int:
        """Every event with a sequence number up to this one is confirmed (or was dropped)."""
        firsts = [self._buffer[0].seq] if self._buffer else []
        firsts.extend(self._in_flight_from)
        return min(firsts) - 1 if firsts else self._emitted

    async def confirmed(self, seq: int) -> None:
        """Wait until every event up to `seq` is confirmed; at once while events cannot be
        published at all (they stay buffered and are published again)."""
        while self.confirmed_through() < seq and not self._failing:
            await self._progress.wait()

    def _progressed(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def emit(self, event: Event, *, source: str) -> None:
        """Buffer `event` for publishing; never blocks, never raises for the broker."""
        if len(self._buffer) >= self._max_pending:
            self._buffer.popleft()
            self.dropped += 1
            _log.error(
                "events.dropped",
                dropped=self.dropped,
                detail=f"more than {self._max_pending} events waited for the broker; "
                "the oldest was dropped",
            )
        self._emitted += 1
        routing_key = event_routing_key(source, event.event)
        self._buffer.append(_Pending(self._emitted, routing_key, event.to_json()))
        self._idle.clear()
        self._wakeup.set()

    async def room(self) -> None:
        """Wait while the broker takes events but more than `high_water` are waiting; never
        while events cannot be published at all."""
        if len(self._buffer) >= self._high_water and not self._failing:
            self._room.clear()
            await self._room.wait()

    async def start(self) -> None:
        """Publishers that each keep one batch in flight: the next batch goes out while the
        last one's confirms are still on their way (one batch at a time waited for the
        broker's slowest confirm, and that was the ceiling)."""
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self._name}-events-{n}")
            for n in range(self._batches_in_flight)
        ]

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every event emitted so far is confirmed; False if time ran out."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Publish what is buffered (up to `timeout_s`), then close; says what is left."""
        if self._tasks and not await self.flush(timeout_s):
            _log.error(
                "events.unpublished_at_exit",
                events=self.pending,
                detail="the broker did not take these lifecycle events before shutdown",
            )
        await cancel_all(self._tasks)
        self._tasks = []
        if self._connection is not None:
            await close_within(self._connection.close(), "events connection")
            self._connection = None

    async def _run(self) -> None:
        while True:
            if len(self._buffer) <= self._high_water // 2 or self._failing:
                self._room.set()
            if not self._buffer:
                self._wakeup.clear()
                if not self._in_flight:
                    self._idle.set()
                await self._wakeup.wait()
                continue
            try:
                exchange = await self._ensure_exchange()
                published = exchange is not None and await self._publish_batch(exchange)
            except Exception:  # a bug of ours: said loudly; this publisher must go on
                _log.exception("events.publisher_failed", waiting=self.pending)
                published = False
            if not published:
                await asyncio.sleep(self._retry_s)

    async def _ensure_exchange(self) -> AbstractExchange | None:
        async with self._opening:
            return await self._open_exchange()

    async def _open_exchange(self) -> AbstractExchange | None:
        if self._exchange is not None:
            return self._exchange
        try:
            if self._connection is None:
                self._connection = await connect(self._settings, name=self._name)
        except HoplineError as exc:
            self._failed(str(exc))
            return None
        channel: AbstractChannel | None = None
        try:
            with connection_torn_down_as():
                # channel() raises at once while the connection is between two attempts
                # (no transport); opening it fails while the broker is away.
                channel = self._connection.channel(publisher_confirms=True)
                await channel
        except Exception as exc:  # tried again after retry_s
            if channel is not None:
                # Closed on purpose, or the robust connection would open it on its return
                # and keep it open beside the next one.
                await _close_quietly(channel)
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        self._channel = channel
        self._exchange = await channel.get_exchange(self._settings.names.events, ensure=False)
        return self._exchange

    async def _publish_batch(self, exchange: AbstractExchange) -> bool:
        if not self._buffer:  # another publisher took them while this one waited to open
            return True
        batch = [self._buffer.popleft() for _ in range(min(self._max_batch, len(self._buffer)))]
        self._in_flight += len(batch)
        self._in_flight_from.append(batch[0].seq)
        try:
            assert self._channel is not None  # opened with the exchange
            with connection_torn_down_as():
                raw = await self._channel.get_underlay_channel()
            confirmed = await publish_batch(
                raw,
                exchange.name,
                [(item.routing_key, item.body) for item in batch],
                _PROPERTIES,
                self._settings.publish_timeout_s,
            )
            reason = "refused (nack), or not confirmed in time"
        except Exception as exc:  # the channel is gone: every one is tried again
            confirmed = [False] * len(batch)
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._in_flight -= len(batch)
            self._in_flight_from.remove(batch[0].seq)
        failed = [item for item, ok in zip(batch, confirmed, strict=True) if not ok]
        self.published += len(batch) - len(failed)
        self._buffer.extendleft(reversed(failed))  # kept, in their order, for the next try
        self._progressed()
        if not failed:
            if self._failing:
                self._failing = False
                _log.warning("events.published_again", waiting=len(self._buffer))
            return True
        channel = self._channel
        if channel is not None and channel.is_closed:
            # A new channel next time (the robust connection reconnects by itself).
            self._exchange = self._channel = None
            await _close_quietly(channel)
        self._failed(reason)
        return False

    def _failed(self, reason: str) -> None:
        # Nobody waits for a broker that does not take events: neither new handlers (room)
        # nor acks (confirmed).
        self._room.set()
        if not self._failing:
            self._failing = True
            _log.warning(
                "events.unpublished",
                waiting=self.pending,
                reason=reason,
                action=f"kept and published again every {self._retry_s:g} s",
            )
        self._progressed()


async def _close_quietly(channel: AbstractChannel) -> None:
    """Close a channel that failed; whatever the dead connection answers (common.teardown)."""
    with contextlib.suppress(Exception), connection_torn_down_as():
        await close_within(channel.close(), "events channel")
