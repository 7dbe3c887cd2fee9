"""Operator actions on quarantine and unroutable queues, shared by the CLI and the admin API.

One `Operator` per command or request: it resolves services to queues, runs the store's
operation on each, and adds the reports up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import BinaryIO

from common.connection import connect
from common.errors import HoplineError
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
    def __init__(self, settings: HoplineSettings, store: QueueSweep) -> None:
        self.settings = settings
        self.store = store
        self.names = settings.names

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: HoplineSettings, *, name: str) -> AsyncIterator[Operator]:
        connection = await connect(settings, name=name, robust=False)
        try:
            yield cls(settings, QueueSweep(connection, settings.names))
        finally:
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
        found = await self._by_id_or_prefix(message_id, queues)
        if len(found) > 1 and not any(message.id == message_id for _, message in found):
            raise AmbiguousIdError(
                f"{message_id!r} starts {len(found)} message ids: give more of the id"
            )
        for queue, message in found:
            if message.id == message_id or len(found) == 1:
                return queue, message
        raise UnknownMessageError(
            f"no message {message_id!r} in {', '.join(queues) or 'any quarantine'}"
        )

    async def resolve_ids(self, selection: Selection, services: Iterable[str]) -> Selection:
        """The selection with each id typed as a unique prefix replaced by the full id."""
        if not selection.ids:
            return selection
        services = list(services)
        full = [(await self.find(given, services))[1].id for given in sorted(selection.ids)]
        return dataclasses.replace(selection, ids=frozenset(full))

    async def _by_id_or_prefix(
        self, message_id: str, queues: list[str]
    ) -> list[tuple[str, FailedMessage]]:
        found: list[tuple[str, FailedMessage]] = []
        wanted = Selection(id_prefixes=frozenset({message_id}))
        for queue in queues:
            found.extend((queue, m) for m in await self.store.browse(queue, wanted, limit=50))
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
        )

    async def _each_quarantine(
        self,
        services: Iterable[str],
        selection: Selection,
        dry_run: bool,
        move: Callable[[str], Awaitable[MoveReport]],
    ) -> MoveReport:
        """Run a move on every chosen quarantine queue; one report, every id accounted for."""
        total = MoveReport(dry_run=dry_run)
        for queue in await self.quarantine_queues(services):
            _add(total, await move(queue))
        _check_ids_found(selection, total)
        return total

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
