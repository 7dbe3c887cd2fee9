"""The single-message route and the probes: a request becomes an envelope, is published,
and known errors become status codes (producer.ingest has what the routes share)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from common.errors import BrokerUnavailableError, PublishNotConfirmedError, StatusUnavailableError
from common.logging import get_logger
from producer.idempotency import request_fingerprint, scoped_key
from producer.ingest import (
    AUTH_RESPONSES,
    REPLAYED_HEADER,
    UNAVAILABLE_RESPONSES,
    Ingest,
    IngestDep,
    ServiceUnavailable,
    checked_body,
    due_time,
    envelope_for,
    idempotency_header,
    key_scope,
    keys_unchecked,
    publish_traced,
)
from producer.schemas import MessageAccepted, MessageIn, Problem
from producer.state import app_state

__all__ = ["probes", "router"]

_log = get_logger("hopline.producer")
router = APIRouter()  # ingestion of one message
probes = APIRouter()  # liveness and readiness, served in every mode


IdempotencyKey = Annotated[
    str | None,
    idempotency_header(
        "Send the same request again with the same key (within the status retention): the "
        "first answer comes back with 200 and `Idempotent-Replayed: true`, and nothing is "
        "published twice. A client `message_id` works the same way."
    ),
]


async def _publish(
    message: MessageIn,
    body: bytes,
    due: datetime | None,
    ingest: Ingest,
    idempotency_key: str | None,
) -> tuple[MessageAccepted, bool]:
    """The answer, and whether it repeats an earlier one (nothing was published then)."""
    envelope = envelope_for(message, ingest.settings)
    accepted = MessageAccepted(
        message_id=envelope.message_id, routing_key=envelope.routing_key, deliver_at=due
    )
    given = idempotency_key or message.message_id
    if given is not None and ingest.idempotent is not None:
        try:
            return await ingest.idempotent.publish_once(
                scoped_key(key_scope(ingest), given),
                request_fingerprint(message),
                accepted,
                lambda: publish_traced(envelope, body, due, ingest),
            )
        except StatusUnavailableError as exc:
            keys_unchecked(idempotency_key, exc, message_id=envelope.message_id)
    elif given is not None:
        keys_unchecked(idempotency_key, None)
    await publish_traced(envelope, body, due, ingest)
    return accepted, False


@router.post(
    "/v1/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {
            "model": MessageAccepted,
            "description": "Accepted before, within the retention, with this Idempotency-Key "
            "or message_id: the first answer again (`Idempotent-Replayed: true`).",
        },
        409: {
            "model": Problem,
            "description": "The Idempotency-Key (or message_id) is being published by another "
            "request (retry after `Retry-After`), or was used for a different request.",
        },
        413: {"model": Problem},
        415: {"model": Problem},
        **AUTH_RESPONSES,
        **UNAVAILABLE_RESPONSES,
    },
    summary="Publish one message; 202 only after the broker confirmed it",
)
async def post_message(
    message: MessageIn,
    ingest: IngestDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> MessageAccepted:
    settings, key = ingest.settings, ingest.key
    body = checked_body(message, settings, ("body",))
    due = due_time(message, ("body",))
    if key is not None:
        key.check_message(message.type, message.priority)
        key.spend(1)
    try:
        accepted, replayed = await _publish(message, body, due, ingest, idempotency_key)
    except (BrokerUnavailableError, PublishNotConfirmedError) as exc:
        raise ServiceUnavailable(str(exc)) from exc
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
    _log.info(
        "message.accepted",
        message_id=accepted.message_id,
        routing_key=accepted.routing_key,
        replayed=replayed,
    )
    return accepted


@probes.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get(
    "/readyz", summary="Broker reachable and topology declared", responses=UNAVAILABLE_RESPONSES
)
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)
    if state.publisher.ready:
        return JSONResponse({"status": "ready", "broker": "connected", "topology": "declared"})
    return JSONResponse(
        {"status": "unavailable", "detail": "RabbitMQ is not reachable or topology not declared"},
        status_code=503,
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )
