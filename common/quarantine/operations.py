"""Operator actions on quarantine and unroutable queues, shared by the CLI and the admin API.

One `Operator` per command or request: it resolves services to queues, runs the store's
operation on each, and adds the reports up. What it moved it also announces as lifecycle
events (`replayed`, `copied` for an edited copy, with `copy_of`, `discarded`), through an
emitter that connects only when there is something to say.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import BinaryIO

from common.connection import connect
from common.emitter import EventEmitter
from common.errors import HoplineError
from common.events import Event, EventName
from common.quarantine.failed import FailedMessage
from common.quarantine.management import find_quarantine_queues
from common.quarantine.selection import Group, Selection, group_messages
from common.quarantine.sweep import Edit, MoveReport, Progress, QueueSweep
from common.settings import HoplineSettings

__all__ = ["AmbiguousIdError", "NothingSelectedError", "Operator", "UnknownMessageError"]


class UnknownMessageError(HoplineError):
    """No message with that id where we looked."""


class AmbiguousIdError(HoplineError):
    """An id prefix that more than one message id starts with."""


class NothingSelectedError(HoplineError):
    """A destructive operation without ids, a group or --all."""


class Operator:
    def __init__(
        self, settings: HoplineSettings, store: QueueSweep, events: EventEmitter | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.names = settings.names
        self.events = events

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: HoplineSettings, *, name: str) -> AsyncIterator[Operator]:
        connection = await connect(settings, name=name, robust=False)
        events = EventEmitter(settings, name=f"{name} events") if settings.events_enabled else None
        try:
            if events is not None:
                await events.start()
            yield cls(settings, QueueSweep(connection, settings.names), events)
        finally:
            if events is not None:
                await events.close(timeout_s=settings.publish_timeout_s)
            await connection.close()

    async def quarantine_queues(self, services: Iterable[str] = ()) -> list[str]:
        chosen = [self.names.quarantine(service) for service in services]
        return chosen or await find_quarantine_queues(self.settings)

    async def browse(
        self, services: Iterable[str], selection: Selection, *, limit: int | None = None
    ) -> list[tuple[str, FailedMessage]]:
        found: list[tuple[str, FailedMessage]] = []
        for queue in await self.quarantine_queues(services):
            remaining = None if limit is None else limit - len(found)
            if remaining is not None and remaining <= 0:
                break
            messages = await self.store.browse(queue, selection, limit=remaining)
            found.extend((queue, message) for message in messages)
        return found

    async def groups(self, services: Iterable[str]) -> list[tuple[str, Group]]:
        result: list[tuple[str, Group]] = []
        for queue in await self.quarantine_queues(services):
            result.extend(
                (queue, group)
                for group in group_messages(await self.store.browse(queue, summaries_only=True))
            )
        return result

    async def find(self, message_id: str, services: Iterable[str]) -> tuple[str, FailedMessage]:
        """The message with this id, or the only one whose id starts with it."""
        queues = await self.quarantine_queues(services)
        candidates = await self._starting_with(frozenset({message_id}), queues, limit=50)
        return _pick(message_id, candidates, queues)

    async def resolve_ids(self, selection: Selection, services: Iterable[str]) -> Selection:
        """The selection with each id typed as a unique prefix replaced by the full id: one
        look over the quarantines for all of them, not one per id."""
        if not selection.ids:
            return selection
        queues = await self.quarantine_queues(services)
        candidates = await self._starting_with(selection.ids, queues, summaries_only=True)
        full = frozenset(_pick(given, candidates, queues)[1].id for given in selection.ids)
        return dataclasses.replace(selection, ids=full)

    async def _starting_with(
        self,
        prefixes: frozenset[str],
        queues: list[str],
        *,
        limit: int | None = None,
        summaries_only: bool = False,
    ) -> list[tuple[str, FailedMessage]]:
        found: list[tuple[str, FailedMessage]] = []
        wanted = Selection(id_prefixes=prefixes)
        for queue in queues:
            messages = await self.store.browse(
                queue, wanted, limit=limit, summaries_only=summaries_only
            )
            found.extend((queue, message) for message in messages)
        return found

    async def replay(
        self,
        services: Iterable[str],
        selection: Selection,
        *,
        select_all: bool = False,
        dry_run: bool = False,
        edit: Edit | None = None,
        progress: Progress | None = None,
    ) -> MoveReport:
        _require_choice(selection, select_all)
        if edit is not None and len(selection.ids) != 1:
            raise HoplineError("an edited replay takes exactly one message id")
        return await self._each_quarantine(
            services,
            selection,
            dry_run,
            lambda queue: self.store.replay(
                queue, selection, dry_run=dry_run, edit=edit, progress=progress
            ),
            "replayed",
        )

    async def discard(
        self,
        services: Iterable[str],
        selection: Selection,
        *,
        archive: BinaryIO | None,
        select_all: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> MoveReport:
        _require_choice(selection, select_all)
        return await self._each_quarantine(
            services,
            selection,
            dry_run,
            lambda queue: self.store.discard(
                queue, selection, archive=archive, dry_run=dry_run, progress=progress
            ),
            "discarded",
        )

    async def _each_quarantine(
        self,
        services: Iterable[str],
        selection: Selection,
        dry_run: bool,
        move: Callable[[str], Awaitable[MoveReport]],
        event: EventName,
    ) -> MoveReport:
        """Run a move on every chosen quarantine queue; one report, every id accounted for."""
        total = MoveReport(dry_run=dry_run)
        for queue in await self.quarantine_queues(services):
            report = await move(queue)
            self._announce(queue, report, event)
            _add(total, report)
        _check_ids_found(selection, total)
        return total

    def _announce(self, queue: str, report: MoveReport, event: EventName) -> None:
        """The lifecycle events of what a move did to the messages of one quarantine."""
        if self.events is None or report.dry_run:
            return
        service = queue.removeprefix(f"{self.names.prefix}.").removesuffix(".quarantine")
        for message_id in report.ids:
            facts = report.moved_facts.get(message_id)
            if facts is None:
                continue
            copy_id = report.edited_copies.get(message_id)
            discarded = event == "discarded"
            self.events.emit(
                Event(
                    event="copied" if copy_id is not None else event,
                    message_id=copy_id or message_id,
                    service=service,
                    type=facts.message_type,
                    routing_key=facts.routing_key,
                    # A replayed message (or an edited copy) begins a new life at attempt 1.
                    attempt=facts.attempts if discarded else 0,
                    at=facts.at,
                    copy_of=message_id if copy_id is not None else None,
                    replay=facts.replay_count + (0 if discarded else 1),
                ),
                source=service,
            )

    async def export(
        self,
        services: Iterable[str],
        selection: Selection,
        out: BinaryIO,
        *,
        progress: Progress | None = None,
    ) -> int:
        count = 0
        for queue in await self.quarantine_queues(services):
            count += await self.store.export(queue, selection, out, progress=progress)
        return count

    async def browse_unroutable(
        self, selection: Selection, *, limit: int | None
    ) -> list[FailedMessage]:
        return await self.store.browse(self.names.unroutable, selection, limit=limit)

    async def replay_unroutable(
        self,
        selection: Selection,
        *,
        routing_key: str | None,
        select_all: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> MoveReport:
        _require_choice(selection, select_all)
        report = await self.store.forward(
            self.names.unroutable,
            selection,
            routing_key=routing_key,
            dry_run=dry_run,
            progress=progress,
        )
        _check_ids_found(selection, report)
        return report


def _require_choice(selection: Selection, select_all: bool) -> None:
    if not (selection.ids or selection.group or select_all):
        raise NothingSelectedError("say which messages: give ids, --group G, or --all")


def _pick(
    given: str, candidates: list[tuple[str, FailedMessage]], queues: list[str]
) -> tuple[str, FailedMessage]:
    """The candidate whose id is `given`, else the only one whose id starts with it."""
    matching = [(queue, m) for queue, m in candidates if m.id.startswith(given)]
    for queue, message in matching:
        if message.id == given:
            return queue, message
    if len(matching) == 1:
        return matching[0]
    if matching:
        raise AmbiguousIdError(f"{given!r} starts {len(matching)} message ids: give more of the id")
    raise UnknownMessageError(f"no message {given!r} in {', '.join(queues) or 'any quarantine'}")


def _add(total: MoveReport, report: MoveReport) -> None:
    total.examined += report.examined
    total.matched += report.matched
    total.moved += report.moved
    total.ids.extend(report.ids)
    total.failures.extend(report.failures)
    total.edited_copies.update(report.edited_copies)


def _check_ids_found(selection: Selection, report: MoveReport) -> None:
    seen = set(report.ids) | {message_id for message_id, _ in report.failures}
    missing = sorted(selection.ids - seen)
    if missing:
        raise UnknownMessageError(
            f"no message with id {', '.join(missing)}"
            + (f" (the other {report.matched} were handled)" if report.matched else "")
        )
