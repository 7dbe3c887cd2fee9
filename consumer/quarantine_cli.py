"""`hopline quarantine ...` and `hopline unroutable ...`: rich tables, `--json` for scripts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Column, Table
from rich.text import Text

from common.errors import ConfigurationError, HoplineError
from common.quarantine.archive import json_safe, open_archive
from common.quarantine.failed import FailedMessage
from common.quarantine.operations import Operator
from common.quarantine.selection import Selection, message_summary, selection_from_filters
from common.quarantine.sweep import Edit, MoveReport
from common.quarantine.sweep import Progress as ProgressCallback
from common.settings import HoplineSettings, load_settings

__all__ = ["quarantine_app", "unroutable_app"]

quarantine_app = typer.Typer(
    help="Inspect, replay or discard failed messages.", no_args_is_help=True
)
unroutable_app = typer.Typer(
    help="Messages whose routing key matched no queue.", no_args_is_help=True
)
# In a pipe rich would assume 80 columns and cut ids; a script reads whole lines instead.
_out = Console() if sys.stdout.isatty() else Console(width=400)
_err = Console(stderr=True)
# Control characters (escape sequences, BEL, ...) in a message must not reach the terminal.
_CONTROL = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])
_T = TypeVar("_T")

Services = Annotated[
    list[str] | None,
    typer.Option(
        "--service",
        "-s",
        help="Service; repeatable. Default: every quarantine (needs the management API).",
    ),
]
TypeFilter = Annotated[str | None, typer.Option("--type", help="Only this message type.")]
ErrorFilter = Annotated[
    str | None, typer.Option("--error", help="Error type or message contains this.")
]
SinceFilter = Annotated[
    str | None, typer.Option("--since", help="Failed within, e.g. 15m, 2h, 7d.")
]
GroupOption = Annotated[str | None, typer.Option("--group", help="A group id from `groups`.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every message matching the filters.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Ids = Annotated[list[str] | None, typer.Argument(help="Message ids.", show_default=False)]


def _run(work: Callable[[Operator], Awaitable[_T]]) -> _T:
    settings = load_settings(HoplineSettings)

    async def main() -> _T:
        async with Operator.open(settings, name="hopline-cli") as operator:
            return await work(operator)

    return asyncio.run(main())


def _selection(
    ids: list[str] | None = None,
    message_type: str | None = None,
    error: str | None = None,
    since: str | None = None,
    group: str | None = None,
) -> Selection:
    try:
        return selection_from_filters(ids, message_type, error, since, group)
    except ValueError as exc:
        raise ConfigurationError(f"--{exc}") from None


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr for operations over many messages (not with --json)."""
    if not enabled or not _err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=_err
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _cell(value: object) -> Text:
    """A value from a message, shown as data: never parsed as rich markup (a foreign
    publisher's `[link=...]` stays text) and without terminal control characters."""
    return Text(str(value).translate(_CONTROL))


def _print_table(columns: list[tuple[Column, bool]], rows: list[list[object]]) -> None:
    """A table whose optional columns (flag False) are left out when the terminal is too
    narrow for all of them, so that the essential ones (ids first) are never cut."""
    wanted = sum(max(len(str(row[i])) for row in rows) + 3 for i in range(len(columns)))
    keep = [i for i, (_, essential) in enumerate(columns) if essential or wanted <= _out.width]
    table = Table(*(columns[i][0] for i in keep))
    for row in rows:
        cells: list[Text] = []
        for i in keep:
            value = row[i]
            cells.append(value if isinstance(value, Text) else _cell(value))
        table.add_row(*cells)
    _out.print(table)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _summary(queue: str, message: FailedMessage) -> dict[str, Any]:
    return json_safe(message_summary(queue, message))  # type: ignore[no-any-return]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _report(report: MoveReport, verb: str, as_json: bool) -> None:
    """`verb` in the infinitive ("replay"); the past tense adds "ed"."""
    if as_json:
        _print_json(report.as_dict())
        return
    if report.dry_run:
        _out.print(
            f"dry run: would {verb} {report.matched} message(s) of {report.examined} examined"
        )
        for message_id in report.ids:
            _out.print(Text("  ") + _cell(message_id))
    else:
        _out.print(f"{_past(verb)} {report.moved} of {report.matched} matching message(s)")
        for original, copy in report.edited_copies.items():
            _out.print(f"  {original} -> edited copy {copy}", markup=False, highlight=False)
    for message_id, why in report.failures:
        _err.print(Text("not moved ", style="red") + _cell(f"{message_id}: {why}"))
    if report.failures:
        raise typer.Exit(1)


def _past(verb: str) -> str:
    return verb + ("d" if verb.endswith("e") else "ed")


@quarantine_app.command("list")
def list_messages(
    services: Services = None,
    message_type: TypeFilter = None,
    error: ErrorFilter = None,
    since: SinceFilter = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 50,
    as_json: AsJson = False,
) -> None:
    """A table of failed messages: id, type, origin, attempts, error, failed at."""
    selection = _selection(None, message_type, error, since)
    found = _run(lambda op: op.browse(services or [], selection, limit=limit))
    if as_json:
        _print_json([_summary(queue, message) for queue, message in found])
        return
    if not found:
        _out.print("quarantine is empty" if selection.is_everything else "no message matches")
        return
    id_width = max(len(message.id) for _, message in found)
    columns = [
        # ids are copied into other commands: never wrapped, never cut
        (Column("id", no_wrap=True, min_width=id_width), True),
        (Column("type", no_wrap=True), True),
        (Column("origin queue", no_wrap=True), False),
        (Column("att.", no_wrap=True), True),
        (Column("error type", no_wrap=True), True),
        (Column("error", no_wrap=True, overflow="ellipsis", max_width=36), False),
        (Column("failed at", no_wrap=True), False),
        (Column("replays", no_wrap=True), False),
    ]
    rows: list[list[object]] = [
        [
            message.id,
            message.message_type or "-",
            message.origin_queue or "-",
            message.attempts or "-",
            message.error_type or "-",
            message.error_first_line or "-",
            _when(message.failed_at),
            Text(f"failed again ({message.replay_count})", style="yellow")
            if message.failed_again_after_replay
            else "-",
        ]
        for _queue, message in found
    ]
    _print_table(columns, rows)


@quarantine_app.command("groups")
def groups(services: Services = None, as_json: AsJson = False) -> None:
    """Failures grouped by error type and message type, with counts, oldest and newest."""
    found = _run(lambda op: op.groups(services or []))
    if as_json:
        _print_json([{"queue": queue, **json_safe(group.as_dict())} for queue, group in found])
        return
    if not found:
        _out.print("quarantine is empty")
        return
    columns = [
        (Column("group", no_wrap=True, min_width=8), True),
        (Column("queue", no_wrap=True), False),
        (Column("error type", no_wrap=True), True),
        (Column("message type", no_wrap=True), True),
        (Column("count", no_wrap=True), True),
        (Column("oldest", no_wrap=True), False),
        (Column("newest", no_wrap=True), False),
        (Column("example", no_wrap=True, overflow="ellipsis", max_width=40), False),
    ]
    rows: list[list[object]] = [
        [
            group.id,
            queue,
            group.error_type or "-",
            group.message_type or "-",
            f"{group.count}"
            + (f" ({group.failed_again} failed again after replay)" if group.failed_again else ""),
            _when(group.oldest),
            _when(group.newest),
            group.example_error[:60],
        ]
        for queue, group in found
    ]
    _print_table(columns, rows)


@quarantine_app.command("show")
def show(message_id: str, services: Services = None, as_json: AsJson = False) -> None:
    """Every property and header, the payload pretty-printed, the traceback."""
    queue, message = _run(lambda op: op.find(message_id, services or []))
    if as_json:
        _print_json(
            {
                **_summary(queue, message),
                "properties": json_safe(message.properties),
                "headers": json_safe(message.headers),
                "payload": message.payload_text(),
                "traceback": message.traceback,
            }
        )
        return
    table = Table("field", "value", show_header=False)
    for name, value in _summary(queue, message).items():
        table.add_row(name, _cell(value))
    for name, value in message.properties.items():
        if value is not None:
            table.add_row(_cell(f"property {name}"), _cell(value))
    for name, value in message.headers.items():
        if name != "x-hopline-error-traceback":
            table.add_row(_cell(f"header {name}"), _cell(json.dumps(json_safe(value))))
    _out.print(table)
    _out.print(Syntax(message.payload_text().translate(_CONTROL), "json", word_wrap=True))
    if message.traceback:
        _out.print(_cell(message.traceback))


def _edit_from(edit_file: Path | None, message: FailedMessage) -> Edit:
    """The corrected payload/headers, from a JSON file or from $EDITOR."""
    if edit_file is not None:
        text = edit_file.read_text()
    else:
        try:
            payload: Any = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            payload = message.body.decode("utf-8", "replace")  # a string to correct by hand
        template: dict[str, Any] = {"payload": payload, "headers": {}}
        with tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False) as draft:
            json.dump(template, draft, indent=2)
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        try:
            subprocess.run([editor, draft.name], check=True)
            text = Path(draft.name).read_text()
        finally:
            os.unlink(draft.name)
    try:
        edited = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"the edit is not valid JSON: {exc}") from None
    if not isinstance(edited, dict) or not set(edited) <= {"payload", "headers"}:
        raise ConfigurationError(
            'the edit must be a JSON object like {"payload": ..., "headers": {...}}'
        )
    headers = edited.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigurationError("the edit's headers must be a JSON object")
    body = orjson.dumps(edited["payload"]) if "payload" in edited else None
    return Edit(body=body, headers=headers)


@quarantine_app.command("replay")
def replay(
    ids: Ids = None,
    services: Services = None,
    group: GroupOption = None,
    select_all: AllOption = False,
    message_type: TypeFilter = None,
    error: ErrorFilter = None,
    since: SinceFilter = None,
    edit: Annotated[
        bool, typer.Option("--edit", help="Correct payload/headers in $EDITOR first.")
    ] = False,
    edit_file: Annotated[
        Path | None, typer.Option("--edit-file", help="Corrected {payload, headers} as JSON.")
    ] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Send messages back to exactly the queue they failed in, attempt counter reset."""
    selection = _selection(ids, message_type, error, since, group)

    async def work(op: Operator) -> MoveReport:
        chosen = await op.resolve_ids(selection, services or [])  # id prefixes, as in git
        correction = None
        if edit or edit_file is not None:
            if len(chosen.ids) != 1:
                raise HoplineError("--edit takes exactly one message id")
            _, original = await op.find(next(iter(chosen.ids)), services or [])
            correction = _edit_from(edit_file, original)
        with _progress(not as_json, "replaying") as progress:
            return await op.replay(
                services or [],
                chosen,
                select_all=select_all,
                dry_run=dry_run,
                edit=correction,
                progress=progress,
            )

    _report(_run(work), "replay", as_json)


@quarantine_app.command("discard")
def discard(
    ids: Ids = None,
    services: Services = None,
    group: GroupOption = None,
    select_all: AllOption = False,
    message_type: TypeFilter = None,
    error: ErrorFilter = None,
    since: SinceFilter = None,
    archive: Annotated[
        Path | None, typer.Option("--archive", help="Append each message to this JSONL file first.")
    ] = None,
    no_archive: Annotated[
        bool, typer.Option("--no-archive", help="Really delete without a copy.")
    ] = False,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Remove messages, archiving each one first unless --no-archive is given."""
    if archive is None and not no_archive and not dry_run:
        raise ConfigurationError("give --archive FILE.jsonl, or --no-archive to delete for good")
    selection = _selection(ids, message_type, error, since, group)

    async def work(op: Operator) -> MoveReport:
        chosen = await op.resolve_ids(selection, services or [])  # id prefixes, as in git
        wanted = archive is not None and not dry_run
        sink = open_archive(archive) if archive is not None and wanted else nullcontext(None)
        with sink as out, _progress(not as_json, "discarding") as progress:
            return await op.discard(
                services or [],
                chosen,
                archive=out,
                select_all=select_all,
                dry_run=dry_run,
                progress=progress,
            )

    _report(_run(work), "discard", as_json)


@quarantine_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    services: Services = None,
    message_type: TypeFilter = None,
    error: ErrorFilter = None,
    since: SinceFilter = None,
) -> None:
    """Copy messages to a JSONL file; they stay in quarantine."""
    selection = _selection(None, message_type, error, since)

    async def work(op: Operator) -> int:
        with out.open("wb") as sink, _progress(True, "exporting") as progress:
            return await op.export(services or [], selection, sink, progress=progress)

    count = _run(work)
    _out.print(f"exported {count} message(s) to {out}")


@quarantine_app.command("import")
def import_archive(
    source: Annotated[Path, typer.Argument(help="A JSONL file from export or discard --archive.")],
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Put archived messages back into the queue each came from."""
    try:
        lines = source.read_bytes().splitlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {source}: {exc.strerror}") from None

    async def work(op: Operator) -> MoveReport:
        with _progress(not as_json, "importing") as progress:
            return await op.store.import_archive(lines, dry_run=dry_run, progress=progress)

    _report(_run(work), "import", as_json)


@unroutable_app.command("list")
def unroutable_list(
    message_type: TypeFilter = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: AsJson = False,
) -> None:
    """Messages kept because their routing key matched no binding."""
    found = _run(lambda op: op.browse_unroutable(Selection(message_type=message_type), limit=limit))
    if as_json:
        _print_json(
            [
                {
                    "id": m.id,
                    "routing_key": m.routing_key,
                    "type": m.message_type,
                    "timestamp": m.timestamp,
                }
                for m in found
            ]
        )
        return
    if not found:
        _out.print("nothing unroutable")
        return
    id_width = max(len(message.id) for message in found)
    columns = [
        (Column("id", no_wrap=True, min_width=id_width), True),
        (Column("routing key", no_wrap=True), True),
        (Column("type", no_wrap=True), False),
        (Column("published at", no_wrap=True), False),
        (Column("payload", no_wrap=True, overflow="ellipsis", max_width=60), False),
    ]
    rows: list[list[object]] = [
        [
            message.id,
            message.routing_key,
            message.message_type or "-",
            _when(message.timestamp),
            message.payload_text()[:60].replace("\n", " "),
        ]
        for message in found
    ]
    _print_table(columns, rows)


@unroutable_app.command("replay")
def unroutable_replay(
    ids: Ids = None,
    select_all: AllOption = False,
    message_type: TypeFilter = None,
    routing_key: Annotated[
        str | None,
        typer.Option("--routing-key", help="Publish under this key instead of the original."),
    ] = None,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Publish unroutable messages to the ingress exchange again (e.g. after fixing bindings)."""
    selection = Selection(ids=frozenset(ids or ()), message_type=message_type)

    async def work(op: Operator) -> MoveReport:
        with _progress(not as_json, "replaying") as progress:
            return await op.replay_unroutable(
                selection,
                routing_key=routing_key,
                select_all=select_all,
                dry_run=dry_run,
                progress=progress,
            )

    _report(_run(work), "replay", as_json)
