"""The quarantine and unroutable tools over HTTP, under `/v1/admin` (bearer admin token).

Thin: each route turns its query or body into a `Selection` and calls
`common.quarantine.operations`, exactly what the `hopline` CLI does, so both always agree with
the queues themselves. The bodies are in `producer/admin_schemas.py`.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, cast

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.errors import BrokerUnavailableError, ConfigurationError, HoplineError
from common.logging import get_logger
from common.quarantine.archive import json_safe, open_archive
from common.quarantine.failed import FailedMessage
from common.quarantine.operations import NothingSelectedError, Operator, UnknownMessageError
from common.quarantine.selection import Selection, message_summary, selection_from_filters
from common.quarantine.sweep import Edit, MoveReport, QueueMissingError
from producer.admin_schemas import (
    DiscardIn,
    GroupOut,
    MessageDetail,
    MessageSummary,
    MoveOut,
    ReplayIn,
    UnroutableReplayIn,
)
from producer.pages import static_page
from producer.settings import ProducerSettings
from producer.state import app_state
from producer.status_api import STATUS_RESPONSES, message_status
from producer.status_schemas import MessageStatusOut

__all__ = ["admin_page", "admin_router"]

_bearer = HTTPBearer(auto_error=False, description="HOPLINE_ADMIN_TOKEN")


def _settings(request: Request) -> ProducerSettings:
    return app_state(request).settings


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token = _settings(request).admin_token
    if token is None:  # the router is not mounted then; this is a second lock
        raise HTTPException(404, "admin routes are disabled (HOPLINE_ADMIN_TOKEN is unset)")
    if credentials is None:
        _audit.warning("admin.refused", client=_client(request), reason="no token")
        raise HTTPException(
            401,
            "send the admin token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(
        credentials.credentials.encode(), token.get_secret_value().encode()
    ):
        _audit.warning("admin.refused", client=_client(request), reason="wrong token")
        raise HTTPException(403, "wrong admin token")


_audit = get_logger("hopline.admin")


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _log_action(request: Request, action: str, report: MoveReport, **what: object) -> None:
    """The audit trail: who did what to which messages (one line per admin action)."""
    _audit.warning(
        "admin.action",
        action=action,
        client=_client(request),
        moved=report.moved,
        matched=report.matched,
        dry_run=report.dry_run,
        ids=report.ids[:100],
        **what,
    )


async def _operator(request: Request) -> AsyncIterator[Operator]:
    try:
        async with Operator.open(_settings(request), name="hopline-admin") as operator:
            yield operator
    except BrokerUnavailableError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None


_PAGE = Path(__file__).with_name("static") / "admin.html"


async def admin_page() -> HTMLResponse:
    """The quarantine console: one static page that talks to the admin API. The page holds
    no data: everything it shows comes from the admin API, which needs the token."""
    return await static_page(_PAGE)


OperatorDep = Annotated[Operator, Depends(_operator)]
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def _selection(
    ids: list[str] | None,
    message_type: str | None,
    error: str | None,
    since: str | None,
    group: str | None,
) -> Selection:
    try:
        return selection_from_filters(ids, message_type, error, since, group)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _summary(queue: str, message: FailedMessage) -> MessageSummary:
    return MessageSummary(**message_summary(queue, message))


async def _guard(work: Any) -> Any:
    """Our errors as HTTP answers a person can act on."""
    try:
        return await work
    except (UnknownMessageError, QueueMissingError) as exc:
        raise HTTPException(404, str(exc)) from None
    except (NothingSelectedError, ConfigurationError) as exc:
        raise HTTPException(422, str(exc)) from None
    except BrokerUnavailableError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    except HoplineError as exc:
        raise HTTPException(400, str(exc)) from None


def _out(report: MoveReport, archive: str | None = None) -> MoveOut:
    return MoveOut(**report.as_dict(), archive=archive)


Services = Annotated[list[str] | None, Query(description="Service; repeatable. Default: all.")]


@admin_router.get(
    "/messages/{message_id}",
    response_model=MessageStatusOut,
    responses=STATUS_RESPONSES,
    summary="Any message's status and timeline, by id or a unique prefix of one",
)
async def message(
    request: Request, message_id: Annotated[str, PathParameter(min_length=1, max_length=255)]
) -> MessageStatusOut | JSONResponse:
    return await message_status(request, message_id, prefix=True)


@admin_router.get("/quarantine/messages", summary="List quarantined messages")
async def list_messages(
    operator: OperatorDep,
    service: Services = None,
    type: str | None = None,
    error: str | None = None,
    since: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> list[MessageSummary]:
    selection = _selection(None, type, error, since, None)
    found = await _guard(operator.browse(service or [], selection, limit=limit))
    return [_summary(queue, message) for queue, message in found]


@admin_router.get("/quarantine/groups", summary="Failures grouped by error and message type")
async def groups(operator: OperatorDep, service: Services = None) -> list[GroupOut]:
    found = await _guard(operator.groups(service or []))
    return [GroupOut(queue=queue, **group.as_dict()) for queue, group in found]


@admin_router.get("/quarantine/messages/{message_id}", summary="One message, whole")
async def show(message_id: str, operator: OperatorDep, service: Services = None) -> MessageDetail:
    queue, message = await _guard(operator.find(message_id, service or []))
    return MessageDetail(
        **_summary(queue, message).model_dump(),
        properties=json_safe(message.properties),
        headers=json_safe(message.headers),
        payload=message.payload_text(),
        traceback=message.traceback,
    )


@admin_router.post("/quarantine/replay", summary="Replay to the origin queues")
async def replay(body: ReplayIn, operator: OperatorDep, request: Request) -> MoveOut:
    selection = _selection(body.ids, body.type, body.error, body.since, body.group)
    edit = None
    if body.edit is not None:
        payload = orjson.dumps(body.edit.payload) if body.edit.replace_payload else None
        edit = Edit(body=payload, headers=dict(body.edit.headers))
    report = await _guard(
        operator.replay(
            body.service, selection, select_all=body.all, dry_run=body.dry_run, edit=edit
        )
    )
    _log_action(request, "replay", report, edited=body.edit is not None)
    return _out(report)


@admin_router.post("/quarantine/discard", summary="Discard (archived on the server first)")
async def discard(body: DiscardIn, operator: OperatorDep, request: Request) -> MoveOut:
    selection = _selection(body.ids, body.type, body.error, body.since, body.group)
    if not body.archive or body.dry_run:
        report = await _guard(
            operator.discard(
                body.service, selection, archive=None, select_all=body.all, dry_run=body.dry_run
            )
        )
        _log_action(request, "discard", report, archived=False)
        return _out(report)
    folder = Path(_settings(request).archive_dir)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    path = folder / f"quarantine-{datetime.now(UTC):%Y%m%d}.jsonl"
    with open_archive(path) as archive:
        report = await _guard(
            operator.discard(body.service, selection, archive=archive, select_all=body.all)
        )
    _log_action(request, "discard", report, archive=str(path))
    return _out(report, archive=str(path))


@admin_router.get(
    "/quarantine/export",
    summary="Messages as JSONL archive lines",
    response_class=StreamingResponse,
)
async def export(
    operator: OperatorDep, request: Request, service: Services = None
) -> StreamingResponse:
    # Held on disk past 1 MiB (in the archive folder: the root filesystem is read-only in
    # the shipped containers), then streamed: a large quarantine does not fill the memory.
    folder = Path(_settings(request).archive_dir)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    # Closed by the streaming below (or on failure): a `with` would close it before that.
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=_EXPORT_IN_MEMORY_BYTES, mode="w+b", dir=str(folder)
    )
    try:
        await _guard(operator.export(service or [], Selection(), cast(BinaryIO, spool)))
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def chunks() -> Iterator[bytes]:
        with spool:
            while chunk := spool.read(64 * 1024):
                yield chunk

    return StreamingResponse(chunks(), media_type="application/x-ndjson")


_EXPORT_IN_MEMORY_BYTES = 1024 * 1024


@admin_router.post("/quarantine/import", summary="Put archived JSONL lines back")
async def import_archive(request: Request, operator: OperatorDep, dry_run: bool = False) -> MoveOut:
    lines = (await request.body()).splitlines()
    report = await _guard(operator.store.import_archive(lines, dry_run=dry_run))
    _log_action(request, "import", report)
    return _out(report)


@admin_router.get("/unroutable/messages", summary="Messages no binding matched")
async def unroutable(
    operator: OperatorDep,
    type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> list[MessageSummary]:
    found = await _guard(operator.browse_unroutable(Selection(message_type=type), limit=limit))
    return [_summary(operator.names.unroutable, message) for message in found]


@admin_router.post("/unroutable/replay", summary="Publish unroutable messages again")
async def unroutable_replay(
    body: UnroutableReplayIn, operator: OperatorDep, request: Request
) -> MoveOut:
    selection = Selection(ids=frozenset(body.ids), message_type=body.type)
    report = await _guard(
        operator.replay_unroutable(
            selection, routing_key=body.routing_key, select_all=body.all, dry_run=body.dry_run
        )
    )
    _log_action(request, "unroutable_replay", report, routing_key=body.routing_key)
    return _out(report)
