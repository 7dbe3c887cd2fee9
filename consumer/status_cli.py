"""`hopline status ID` (where a message is) and `hopline recorder` (the status recorder alone).

Both read the store at HOPLINE_STATUS_URL; `status` takes a unique prefix of an id too.
"""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from common.errors import HoplineError
from common.logging import configure_logging
from common.settings import HoplineSettings, load_settings
from common.status.recorder import Recorder
from common.status.store import MessageStatus, SqlStatusStore, open_store

__all__ = ["recorder", "status"]


class UnknownMessageStatusError(HoplineError):
    """No status for that id (never seen, or older than the retention)."""


def _store(settings: HoplineSettings) -> SqlStatusStore:
    return open_store(
        settings.status_url.get_secret_value(), retention_s=settings.status_retention_s
    )


async def _find(store: SqlStatusStore, given: str) -> MessageStatus:
    now = datetime.now(UTC)
    found = await store.lookup(given, now)
    if found is not None:
        return found
    ids = await store.ids_starting_with(given, now, limit=2)
    if len(ids) > 1:
        raise HoplineError(f"{given!r} starts more than one message id: give more of the id")
    found = await store.lookup(ids[0], now) if ids else None
    if found is None:
        raise UnknownMessageStatusError(
            f"message {given!r} is unknown: never seen, or older than the retention "
            "(HOPLINE_STATUS_RETENTION_S)"
        )
    return found


def status(
    message_id: Annotated[str, typer.Argument(metavar="ID", help="A message id or its prefix")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Where a message is: its state per consuming service, and its timeline."""
    settings = load_settings(HoplineSettings)

    async def look() -> MessageStatus:
        store = _store(settings)
        try:
            return await _find(store, message_id)
        finally:
            await store.close()

    found = asyncio.run(look())
    if as_json:
        typer.echo(json.dumps(_as_dict(found), indent=2))
        return
    for line in _lines(found):
        typer.echo(line)


def _as_dict(found: MessageStatus) -> dict[str, Any]:
    return {
        "message_id": found.message_id,
        "type": found.type,
        "routing_key": found.routing_key,
        "accepted_at": found.accepted_at,
        "copy_of": found.copy_of,
        "copies": found.copies,
        "services": {s.service: _fields(s) for s in found.services},
        "timeline": [_fields(entry) for entry in found.timeline],
    }


def _fields(item: object) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__slots__}  # type: ignore[attr-defined]


def _lines(found: MessageStatus) -> list[str]:
    lines = [f"message {found.message_id}  {found.type or '?'}  ({found.routing_key or '?'})"]
    if found.copy_of:
        lines.append(f"  edited copy of {found.copy_of}")
    for copy in found.copies:
        lines.append(f"  edited copy made: {copy}")
    if not found.services:
        lines.append("  accepted; no service has taken it yet")
    for service in found.services:
        detail = f"attempt {service.attempt}"
        if service.retry_delay_s is not None:
            detail += f", next try after {service.retry_delay_s:g} s"
        if service.result is not None:
            detail += f", result {json.dumps(service.result)[:200]}"
        if service.reason:
            detail += f", {service.reason[:200]}"
        lines.append(f"  {service.service}: {service.state} ({detail})")
    lines.append("timeline")
    for entry in found.timeline:
        what = f"attempt {entry.attempt}" if entry.attempt else ""
        if entry.delay_s is not None:
            what += f", retry in {entry.delay_s:g} s"
        if entry.error_type:
            what += f", {entry.error_type}: {(entry.error_message or '')[:120]}"
        if entry.copy_of:
            what += f", copy of {entry.copy_of}"
        lines.append(f"  {entry.at}  {entry.service:<12} {entry.event:<16} {what}".rstrip())
    return lines


def recorder() -> None:
    """Record lifecycle events into the status store until stopped (SIGTERM, Ctrl-C); run
    it where producers have HOPLINE_STATUS_RECORDER=false."""
    settings = load_settings(HoplineSettings)
    configure_logging(settings.log_level, settings.log_format)

    async def record() -> None:
        store = _store(settings)
        running = Recorder(settings, store)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await running.start()
        try:
            await stop.wait()
        finally:
            await running.close()
            await store.close()

    asyncio.run(record())
