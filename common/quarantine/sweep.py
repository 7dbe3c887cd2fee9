"""Look at and move failed messages, straight on the RabbitMQ queues.

Every move publishes a copy with a confirm and only then acks the original, so a tool killed
half-way leaves each message in its source, its destination, or both, never in neither.
Looking is free: messages are taken with a consumer and all handed back with one
`basic.nack(multiple, requeue)`, which keeps their order and settles nothing. (Quorum queues
count the look in `x-delivery-count`; the quarantine and unroutable queues have no delivery
limit, and RabbitMQ 4.3 does not count a bulk nack at all.)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import BinaryIO

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
)
from aiormq.exceptions import ChannelNotFoundEntity

from common.errors import HoplineError
from common.names import Names
from common.quarantine.archive import from_archive_line
from common.quarantine.failed import FailedMessage, failed_from_delivery
from common.quarantine.moves import (
    Archive,
    Drop,
    Edit,
    Forward,
    Look,
    Move,
    Moved,
    MoveReport,
    Replay,
    nothing,
)
from common.quarantine.selection import Selection

__all__ = [
    "Edit",
    "MoveReport",
    "Progress",
    "QueueMissingError",
    "QueueSweep",
]

Progress = Callable[[int, int], None]  # (done, total)
# basic.qos takes a 16-bit count: the most messages one look can hold at once.
_MAX_PREFETCH = 65_535
_IDLE_S = 1.0  # no delivery for this long: the queue has nothing more for us
_TAIL_S = 0.15  # after the counted messages, how long to wait for ones the count missed
_PREFETCH_MARGIN = 1_000
_REQUEUE_WAIT_S = 5.0


class QueueMissingError(HoplineError):
    """The queue to look at does not exist (wrong service, prefix or vhost)."""


class QueueSweep:
    def __init__(
        self, connection: AbstractConnection, names: Names, *, publish_timeout_s: float = 10.0
    ) -> None:
        self._connection = connection
        self._names = names
        self._timeout_s = publish_timeout_s

    # -- looking ---------------------------------------------------------------------------

    async def depth(self, queue: str) -> int:
        async with self._connection.channel(publisher_confirms=False) as channel:
            return await _depth(channel, queue)

    async def browse(
        self,
        queue: str,
        selection: Selection = Selection(),
        *,
        limit: int | None = None,
        progress: Progress | None = None,
        summaries_only: bool = False,
    ) -> list[FailedMessage]:
        """The matching messages in queue order; the queue is left exactly as it was.

        `summaries_only` keeps no body, headers or traceback (what grouping needs, in a
        fraction of the memory of a large quarantine)."""
        found: list[FailedMessage] = []

        async def keep(message: FailedMessage, _incoming: AbstractIncomingMessage) -> None:
            if summaries_only:
                message = dataclasses.replace(message, body=b"", headers={}, traceback="")
            found.append(message)

        await self._sweep(queue, selection, Look(keep), limit=limit, progress=progress)
        return found

    async def export(
        self, queue: str, selection: Selection, out: BinaryIO, *, progress: Progress | None = None
    ) -> int:
        """Write matching messages as archive lines; they stay in the queue."""
        move = Archive(out, queue, ack=False)
        report = await self._sweep(queue, selection, move, progress=progress)
        return report.matched

    # -- moving ----------------------------------------------------------------------------

    async def replay(
        self,
        queue: str,
        selection: Selection,
        *,
        dry_run: bool = False,
        edit: Edit | None = None,
        progress: Progress | None = None,
    ) -> MoveReport:
        """Back to exactly the queue each message failed in, attempt counter reset."""
        if dry_run:
            return await self._dry_run(queue, selection, progress)
        async with self._connection.channel(publisher_confirms=True, on_return_raises=True) as out:
            requeue = await out.get_exchange(self._names.requeue, ensure=False)
            move = Replay(requeue, self._timeout_s, edit)
            return await self._sweep(queue, selection, move, progress=progress, report=move.report)

    async def forward(
        self,
        queue: str,
        selection: Selection,
        *,
        routing_key: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> MoveReport:
        """Publish again to the ingress exchange (unroutable messages, once bindings exist)."""
        if dry_run:
            return await self._dry_run(queue, selection, progress)
        async with self._connection.channel(publisher_confirms=True) as out:
            ingress = await out.get_exchange(self._names.ingress, ensure=False)
            move = Forward(ingress, self._timeout_s, routing_key)
            return await self._sweep(queue, selection, move, progress=progress, report=move.report)

    async def discard(
        self,
        queue: str,
        selection: Selection,
        *,
        archive: BinaryIO | None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> MoveReport:
        """Remove; with `archive`, each message is written and synced there before its ack."""
        if dry_run:
            return await self._dry_run(queue, selection, progress)
        move: Move = Archive(archive, queue, ack=True) if archive else Drop()
        return await self._sweep(queue, selection, move, progress=progress)

    async def import_archive(
        self, lines: Iterable[bytes], *, dry_run: bool = False, progress: Progress | None = None
    ) -> MoveReport:
        """Put archived messages back into the queue each came from, with confirms."""
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(from_archive_line(line))
            except ValueError as exc:
                raise HoplineError(f"line {number}: {exc}") from None
        report = MoveReport(examined=len(records), matched=len(records), dry_run=dry_run)
        report.ids = [message_id for _, _, message_id in records]
        if dry_run:
            return report
        async with self._connection.channel(publisher_confirms=True, on_return_raises=True) as out:
            for done, (queue, message, message_id) in enumerate(records, start=1):
                if not self._names.holds_failures(queue):
                    # An archive line names its queue; a forged one must not inject work.
                    report.failures.append(
                        (message_id, f"{queue!r} is not a quarantine or unroutable queue")
                    )
                    continue
                try:
                    await out.default_exchange.publish(message, queue, timeout=self._timeout_s)
                    report.moved += 1
                except Exception as exc:
                    report.failures.append((message_id, f"{type(exc).__name__}: {exc}"))
                if progress:
                    progress(done, len(records))
        return report

    async def _dry_run(
        self, queue: str, selection: Selection, progress: Progress | None
    ) -> MoveReport:
        """What a move would take: the same sweep, settling nothing."""
        return await self._sweep(queue, selection, Look(nothing), progress=progress, dry_run=True)

    # -- the one loop every operation uses --------------------------------------------------

    async def _sweep(
        self,
        queue: str,
        selection: Selection,
        move: Move,
        *,
        limit: int | None = None,
        progress: Progress | None = None,
        dry_run: bool = False,
        report: MoveReport | None = None,
    ) -> MoveReport:
        report = report or MoveReport()
        report.dry_run = dry_run
        async with self._connection.channel(publisher_confirms=False) as channel:
            # A quorum queue's count can lag its confirms by a moment: `total` is a hint, and
            # the sweep ends when the queue has had nothing more for us for a short while.
            total = await _depth(channel, queue)
            wanted = total if limit is None or not selection.is_everything else min(limit, total)
            await channel.set_qos(prefetch_count=min(wanted + _PREFETCH_MARGIN, _MAX_PREFETCH))
            source = await channel.get_queue(queue, ensure=False)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

            async def arrived(incoming: AbstractIncomingMessage) -> None:
                inbox.put_nowait(incoming)

            tag = await source.consume(arrived, no_ack=False)
            try:
                now = datetime.now(UTC)
                acted_on: set[str] = set()
                while limit is None or report.matched < limit:
                    wait_s = _IDLE_S if report.examined < total else _TAIL_S
                    try:
                        incoming = await asyncio.wait_for(inbox.get(), wait_s)
                    except TimeoutError:
                        break
                    message = failed_from_delivery(incoming)
                    if move.takes_out and message.id in acted_on:
                        # A copy of one we moved came back (replayed, failed again): it is
                        # new work for the next command, not this one, or we would loop.
                        if report.examined >= total:
                            break
                        continue
                    report.examined += 1
                    if selection.matches(message, now=now):
                        acted_on.add(message.id)
                        report.matched += 1
                        report.moved_facts[message.id] = Moved.of(message, datetime.now(UTC))
                        if dry_run or not move.records_ids_on_confirm:
                            report.ids.append(message.id)
                        await move.take(message, incoming)
                    if progress:
                        progress(report.examined, max(total, report.examined))
                await move.finish()
            finally:
                await source.cancel(tag)
                # Everything we did not settle goes back, in order, in one frame.
                raw = await channel.get_underlay_channel()
                await raw.basic_nack(delivery_tag=0, multiple=True, requeue=True)
                # The broker requeues asynchronously: wait until the queue shows them again,
                # so that the next look (or command) sees the queue as it was.
                await _await_depth(channel, queue, max(total, report.examined) - move.settled)
        report.moved = move.settled
        return report


async def _depth(channel: AbstractChannel, queue: str) -> int:
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except ChannelNotFoundEntity as exc:
        raise QueueMissingError(f"queue {queue!r} does not exist") from exc
    return int(declared.declaration_result.message_count or 0)


async def _await_depth(channel: AbstractChannel, queue: str, expected: int) -> None:
    deadline = asyncio.get_running_loop().time() + _REQUEUE_WAIT_S
    while await _depth(channel, queue) < expected:
        if asyncio.get_running_loop().time() > deadline:
            return  # someone else is consuming; nothing to wait for
        await asyncio.sleep(0.02)
