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
from producer.api import ServiceUnavailable
from producer.schemas import Problem
from producer.state import app_state
from producer.status_schemas import MessageStatusOut, Unknown, status_out

__all__ = ["status_router"]

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


@status_router.get(
    "/v1/messages/{message_id}",
    response_model=MessageStatusOut,
    responses={
        401: {"model": Problem, "description": "No API key, or an unknown one."},
        404: {"model": Unknown, "description": "Never seen, or older than the retention."},
        503: {"model": Problem, "description": "The status store is unavailable right now."},
    },
    summary="A message's status per consuming service, its attempts and its timeline",
    dependencies=[Depends(_reader)],
)
async def get_message(
    request: Request,
    message_id: Annotated[str, Path(min_length=1, max_length=255)],
) -> MessageStatusOut | JSONResponse:
    store = app_state(request).status.store
    if store is None:
        raise ServiceUnavailable("this producer keeps no message status (no status store)")
    try:
        found = await store.lookup(message_id, datetime.now(UTC))
    except StatusUnavailableError as exc:
        _log.warning("status.lookup_failed", error=str(exc))
        raise ServiceUnavailable("message status is unavailable right now") from exc
    if found is None:
        unknown = Unknown(
            detail=f"message {message_id!r} is unknown: never accepted or seen here, or older "
            "than the retention (HOPLINE_STATUS_RETENTION_S)"
        )
        return JSONResponse(unknown.model_dump(), status_code=404)
    return status_out(found)
