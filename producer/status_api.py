"""`GET /v1/messages/{message_id}`: where a message is, from the status store.

An id never seen, or seen longer ago than the retention, is `404` with `"status":
"unknown"`: never a pending state (the trap of Celery's PENDING). A store that cannot be
read is `503` with Retry-After: the status is unavailable, not wrong. With ingestion API
keys configured, any valid key may read a status (Authorization: Bearer).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.errors import StatusUnavailableError
from common.logging import get_logger
from producer.ingest import ServiceUnavailable
from producer.schemas import Problem
from producer.state import app_state
from producer.status_schemas import MessageStatusOut, Unknown, status_out

__all__ = ["STATUS_RESPONSES", "message_status", "status_router"]

_log = get_logger("hopline.producer")
status_router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="An ingestion API key (HOPLINE_API_KEYS)")


async def _reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Any valid ingestion key (nothing when ingestion is open)."""
    authorization = request.headers.get("authorization")
    app_state(request).keyring.authenticate(authorization)


STATUS_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": Unknown, "description": "Never seen, or older than the retention."},
    503: {"model": Problem, "description": "The status store is unavailable right now."},
}


@status_router.get(
    "/v1/messages/{message_id}",
    response_model=MessageStatusOut,
    responses={
        401: {"model": Problem, "description": "No API key, or an unknown one."},
        **STATUS_RESPONSES,
    },
    summary="A message's status per consuming service, its attempts and its timeline",
    dependencies=[Depends(_reader)],
)
async def get_message(
    request: Request,
    message_id: Annotated[str, Path(min_length=1, max_length=255)],
) -> MessageStatusOut | JSONResponse:
    return await message_status(request, message_id)


async def message_status(
    request: Request, message_id: str, *, prefix: bool = False
) -> MessageStatusOut | JSONResponse:
    """The status of `message_id` (with `prefix`, of the only id that starts with it), a
    404 saying "unknown", or ServiceUnavailable (503)."""
    store = app_state(request).status.store
    if store is None:
        raise ServiceUnavailable("this producer keeps no message status (no status store)")
    now = datetime.now(UTC)
    try:
        found = await store.lookup(message_id, now)
        if found is None and prefix:
            ids = await store.ids_starting_with(message_id, now, limit=2)
            found = await store.lookup(ids[0], now) if len(ids) == 1 else None
    except StatusUnavailableError as exc:
        _log.warning("status.lookup_failed", error=str(exc))
        raise ServiceUnavailable("message status is unavailable right now") from exc
    if found is None:
        unknown = Unknown(
            detail=f"message {message_id!r} is unknown: never accepted or seen here, or older "
            "than the retention (HOPLINE_STATUS_RETENTION_S)"
            + (", or the start of more than one id" if prefix else "")
        )
        return JSONResponse(unknown.model_dump(), status_code=404)
    return status_out(found)
