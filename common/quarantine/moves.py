"""What a sweep does with each message it takes: look, drop, archive, or publish a copy.

Each move settles (acks) a message only once it is safe elsewhere: archived and synced to
disk, or its copy confirmed by the broker. `common.quarantine.sweep` runs the moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from common import headers as h
from common.errors import HoplineError
from common.quarantine.archive import to_archive_line
from common.quarantine.failed import FailedMessage
from common.quarantine.replays import forward_copy, replay_copy

__all__ = [
    "Archive",
    "Drop",
    "Edit",
    "Forward",
    "Look",
    "Move",
    "MoveReport",
    "Replay",
    "nothing",
]

_PUBLISH_WINDOW = 256  # copies awaiting their confirm at once
_ARCHIVE_SYNC_EVERY = 256


@dataclass(frozen=True, slots=True)
class Edit:
    """A corrected payload and/or extra headers for an edited replay."""

    body: bytes | None = None
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Moved:
    """What the lifecycle events of a moved message need of it (not its body)."""

    message_type: str | None
    routing_key: str | None
    attempts: int
    replay_count: int
    at: datetime  # when it was taken, before its copy was published

    @classmethod
    def of(cls, message: FailedMessage, at: datetime) -> Moved:
        original = message.headers.get(h.ROUTING_KEY)
        if isinstance(original, bytes):
            original = original.decode("utf-8", "replace")
        return cls(
            message.message_type,
            original if isinstance(original, str) else message.routing_key or None,
            message.attempts or 1,
            message.replay_count,
            at,
        )


@dataclass(slots=True)
class MoveReport:
    examined: int = 0
    matched: int = 0
    moved: int = 0
    dry_run: bool = False
    ids: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    edited_copies: dict[str, str] = field(default_factory=dict)  # original id -> new id
    moved_facts: dict[str, Moved] = field(default_factory=dict)  # id -> for its events

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "matched": self.matched,
            "moved": self.moved,
            "dry_run": self.dry_run,
            "ids": self.ids,
            "failures": [{"id": i, "error": why} for i, why in self.failures],
            "edited_copies": dict(self.edited_copies),
        }


class Move(Protocol):
    takes_out: bool  # whether it removes messages from the queue (and copies may come back)
    records_ids_on_confirm: bool  # whether it records the ids it moved itself, once confirmed

    @property
    def settled(self) -> int:
        """How many messages this move acked (removed from the source)."""

    async def take(self, message: FailedMessage, incoming: AbstractIncomingMessage) -> None: ...

    async def finish(self) -> None: ...


async def nothing(_message: FailedMessage, _incoming: AbstractIncomingMessage) -> None:
    """A look that only counts (dry runs)."""
    return None


class Look:
    """Calls back for each message and settles nothing."""

    takes_out = False
    records_ids_on_confirm = False

    def __init__(
        self, call: Callable[[FailedMessage, AbstractIncomingMessage], Awaitable[None]]
    ) -> None:
        self._call = call

    @property
    def settled(self) -> int:
        return 0

    async def take(self, message: FailedMessage, incoming: AbstractIncomingMessage) -> None:
        await self._call(message, incoming)

    async def finish(self) -> None:
        return None


class Drop:
    """Ack at once (`--no-archive`, chosen explicitly)."""

    takes_out = True
    records_ids_on_confirm = False

    def __init__(self) -> None:
        self.acks = 0

    @property
    def settled(self) -> int:
        return self.acks

    async def take(self, _message: FailedMessage, incoming: AbstractIncomingMessage) -> None:
        await incoming.ack()
        self.acks += 1

    async def finish(self) -> None:
        return None


class Archive:
    """Write archive lines; when moving, sync them to disk before acking their messages."""

    def __init__(self, out: BinaryIO, queue: str, *, ack: bool) -> None:
        self.takes_out = ack
        self.records_ids_on_confirm = False
        self._out = out
        self._queue = queue
        self._ack = ack
        self._pending: list[AbstractIncomingMessage] = []
        self.acks = 0

    @property
    def settled(self) -> int:
        return self.acks

    async def take(self, message: FailedMessage, incoming: AbstractIncomingMessage) -> None:
        self._out.write(to_archive_line(message, queue=self._queue))
        if self._ack:
            self._pending.append(incoming)
            if len(self._pending) >= _ARCHIVE_SYNC_EVERY:
                await self.finish()

    async def finish(self) -> None:
        self._out.flush()
        # Not a real file (a pipe, a buffer): nothing to sync.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.fsync(self._out.fileno())
        for incoming in self._pending:
            await incoming.ack()
            self.acks += 1
        self._pending.clear()


class _Publishing:
    """Publish a copy per message (a window of confirms in flight), ack each once confirmed."""

    takes_out = True
    records_ids_on_confirm = True

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._window = asyncio.Semaphore(_PUBLISH_WINDOW)
        self._tasks: set[asyncio.Task[None]] = set()
        self.report = MoveReport()

    @property
    def settled(self) -> int:
        return self.report.moved

    def _copy(self, message: FailedMessage) -> tuple[AbstractExchange, aio_pika.Message, str]:
        raise NotImplementedError

    async def take(self, message: FailedMessage, incoming: AbstractIncomingMessage) -> None:
        try:
            exchange, copy, routing_key = self._copy(message)
        except HoplineError as exc:
            self.report.failures.append((message.id, str(exc)))
            return
        await self._window.acquire()
        task = asyncio.create_task(
            self._publish_then_ack(message, incoming, exchange, copy, routing_key)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_then_ack(
        self,
        message: FailedMessage,
        incoming: AbstractIncomingMessage,
        exchange: AbstractExchange,
        copy: aio_pika.Message,
        routing_key: str,
    ) -> None:
        try:
            await exchange.publish(copy, routing_key, timeout=self._timeout_s)
        except Exception as exc:  # the original stays where it is
            self.report.failures.append((message.id, _publish_failure(exc)))
        else:
            await incoming.ack()
            self.report.moved += 1
            self.report.ids.append(message.id)
        finally:
            self._window.release()

    async def finish(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks)


def _publish_failure(exc: Exception) -> str:
    if isinstance(exc, aio_pika.exceptions.PublishError):
        return "no queue took the copy (does its origin queue still exist?)"
    return f"{type(exc).__name__}: {exc}"


class Replay(_Publishing):
    def __init__(self, requeue: AbstractExchange, timeout_s: float, edit: Edit | None) -> None:
        super().__init__(timeout_s)
        self._requeue = requeue
        self._edit = edit

    def _copy(self, message: FailedMessage) -> tuple[AbstractExchange, aio_pika.Message, str]:
        if not message.origin_queue:
            raise HoplineError("its origin queue is unknown (no x-hopline-queue, no x-death)")
        now = datetime.now(UTC)
        if self._edit is None:
            return self._requeue, replay_copy(message, replayed_at=now), ""
        new_id = str(uuid.uuid4())
        copy = replay_copy(
            message,
            replayed_at=now,
            body=self._edit.body,
            extra_headers=self._edit.headers,
            new_message_id=new_id,
        )
        self.report.edited_copies[message.id] = new_id
        return self._requeue, copy, ""


class Forward(_Publishing):
    def __init__(
        self, ingress: AbstractExchange, timeout_s: float, routing_key: str | None
    ) -> None:
        super().__init__(timeout_s)
        self._ingress = ingress
        self._routing_key = routing_key

    def _copy(self, message: FailedMessage) -> tuple[AbstractExchange, aio_pika.Message, str]:
        key = self._routing_key or message.routing_key
        copy = forward_copy(message)
        copy.headers.pop(h.ROUTING_KEY, None)
        return self._ingress, copy, key
