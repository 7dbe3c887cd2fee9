"""Routes: turn a request into an envelope, publish it, map known errors to status codes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common import headers as h
from common.delays import DelayError, delay_routing_key, seconds_until
from common.envelope import Envelope, encode_payload, new_envelope, to_message
from common.errors import BrokerUnavailableError, PublishNotConfirmedError, StatusUnavailableError
from common.logging import get_logger
from common.tracing import TRACE_HEADERS, publish_span
from producer.auth import ApiKey
from producer.gate import AUTHENTICATED_KEY
from producer.idempotency import Idempotent, fingerprint
from producer.metrics import ProducerMetrics
from producer.publisher import Publisher
from producer.schemas import (
    BatchIn,
    BatchItemResult,
    BatchOut,
    MessageAccepted,
    MessageIn,
    Problem,
)
from producer.settings import ProducerSettings
from producer.state import app_state
from producer.status import ProducerStatus

__all__ = ["PayloadTooLarge", "ServiceUnavailable", "router"]

_log = get_logger("hopline.producer")
router = APIRouter()  # ingestion
probes = APIRouter()  # liveness and readiness, served in every mode


class ServiceUnavailable(Exception):
    """Answered as 503 with Retry-After: the client should try the same request again."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PayloadTooLarge(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


_bearer = HTTPBearer(auto_error=False, description="An ingestion API key (HOPLINE_API_KEYS)")


async def _api_key(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey | None:
    """The caller's key, found by `AuthenticateFirst` before the body was read (None when
    the API is open). The bearer dependency only documents the scheme in the OpenAPI schema."""
    key: ApiKey | None = request.scope.get(AUTHENTICATED_KEY)
    return key


@dataclass(frozen=True, slots=True)
class Ingest:
    """What an ingestion endpoint needs besides the body."""

    settings: ProducerSettings
    publisher: Publisher
    key: ApiKey | None
    metrics: ProducerMetrics
    trace_headers: dict[str, str]  # the request's W3C trace context, continued by the publish
    status: ProducerStatus
    idempotent: Idempotent | None


class UnsupportedMediaType(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _require_json(request: Request) -> None:
    """415 for a body that is not JSON (form data, text): a 422 about 'a valid dictionary'
    would not tell the client what to change. No Content-Type at all is read as JSON."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported: send the body as JSON with "
            "'Content-Type: application/json'"
        )


async def _ingest(request: Request, key: Annotated[ApiKey | None, Depends(_api_key)]) -> Ingest:
    _require_json(request)
    state = app_state(request)
    trace_headers = {
        name: request.headers[name] for name in TRACE_HEADERS if name in request.headers
    }
    return Ingest(
        state.settings,
        state.publisher,
        key,
        state.metrics,
        trace_headers,
        state.status,
        state.idempotent,
    )


# Dependencies are `async def` on purpose: FastAPI runs plain `def` ones in its thread pool.
# The ingestion endpoints take one `IngestDep` rather than three: FastAPI's per-request work
# grows with the number of dependencies. Both measured: bench/README.md.
IngestDep = Annotated[Ingest, Depends(_ingest)]

_AUTH: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No API key, or an unknown one."},
    403: {"model": Problem, "description": "The key may not publish this type or priority."},
    429: {"model": Problem, "description": "The key is over its rate; retry after `Retry-After`."},
}
_UNAVAILABLE: dict[int | str, dict[str, object]] = {
    503: {
        "model": Problem,
        "description": "Broker unreachable or publish not confirmed; "
        "retry after `Retry-After` seconds.",
    }
}


def _check(message: MessageIn, settings: ProducerSettings, loc: tuple[str | int, ...]) -> bytes:
    """Rules that depend on configuration; returns the encoded payload."""
    if message.priority not in settings.priorities:
        raise RequestValidationError(
            [
                {
                    "type": "enum",
                    "loc": (*loc, "priority"),
                    "msg": f"priority must be one of {', '.join(settings.priorities)}",
                    "input": message.priority,
                }
            ]
        )
    try:
        body = encode_payload(message.payload)
    except ValueError as exc:  # e.g. a lone surrogate in a string: not encodable as UTF-8
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": (*loc, "payload"),
                    "msg": f"payload cannot be encoded as UTF-8 JSON: {exc}",
                    "input": None,
                }
            ]
        ) from exc
    if len(body) > settings.max_payload_bytes:
        where = ".".join(str(part) for part in loc[1:]) or "message"
        raise PayloadTooLarge(
            f"{where}: payload is {len(body)} bytes as JSON; the limit is "
            f"{settings.max_payload_bytes} bytes (HOPLINE_MAX_PAYLOAD_BYTES)"
        )
    return body


def _due(message: MessageIn, loc: tuple[str | int, ...]) -> datetime | None:
    """When a scheduled message becomes due (None: now); 422 for a time in the past, too far
    ahead, or a routing key too long to carry a delay."""
    if message.deliver_at is None and not message.delay_s:
        return None
    now = datetime.now(UTC)
    field = "deliver_at" if message.deliver_at is not None else "delay_s"
    due = message.deliver_at or now + timedelta(seconds=message.delay_s or 0)
    try:
        delay_routing_key(seconds_until(due, now), f"{message.priority}.{message.type}")
    except DelayError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": (*loc, field), "msg": str(exc), "input": None}]
        ) from exc
    return due.astimezone(UTC)


def _envelope(message: MessageIn, settings: ProducerSettings) -> Envelope:
    return new_envelope(
        message.type,
        message.payload,
        message.priority,
        app_id=settings.app_id,
        correlation_id=message.correlation_id,
        headers=message.headers,
        message_id=message.message_id,
    )


async def _publish_traced(
    envelope: Envelope, body: bytes, due: datetime | None, ingest: Ingest
) -> None:
    """Publish one message in a PRODUCER span that continues the request's trace."""
    exchange = ingest.settings.names.ingress
    sent_at = datetime.now(UTC)  # before the publish: a consumer may start before the confirm
    with publish_span(exchange, envelope.routing_key, ingest.trace_headers) as inject:
        message = to_message(envelope, body)
        inject(message.headers)
        delay_s = None
        if due is not None:
            message.headers[h.DELIVER_AT] = due.isoformat()
            delay_s = max(0.0, (due - datetime.now(UTC)).total_seconds())
        await ingest.publisher.publish(message, envelope.routing_key, delay_s)

    ingest.status.accepted(envelope, sent_at)


# Printable ASCII, like a message_id: it is stored and compared as text.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[ -~]+$",
        description="Send the same request again with the same key (within the status "
        "retention): the first answer comes back with 200 and `Idempotent-Replayed: true`, "
        "and nothing is published twice. A client `message_id` works the same way.",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"


async def _publish(
    message: MessageIn,
    body: bytes,
    due: datetime | None,
    ingest: Ingest,
    idempotency_key: str | None,
) -> tuple[MessageAccepted, bool]:
    """The answer, and whether it repeats an earlier one (nothing was published then)."""
    envelope = _envelope(message, ingest.settings)
    accepted = MessageAccepted(
        message_id=envelope.message_id, routing_key=envelope.routing_key, deliver_at=due
    )
    given = idempotency_key or message.message_id
    if given is None:
        await _publish_traced(envelope, body, due, ingest)
        return accepted, False
    if ingest.idempotent is None:
        if idempotency_key is not None:
            raise ServiceUnavailable(
                "this producer keeps no status store: it cannot honour an Idempotency-Key"
            )
        await _publish_traced(envelope, body, due, ingest)
        return accepted, False
    scope = ingest.key.spec.name if ingest.key is not None else ""
    try:
        return await ingest.idempotent.publish_once(
            f"{scope}\x00{given}",
            fingerprint(message.model_dump_json().encode()),
            accepted,
            lambda: _publish_traced(envelope, body, due, ingest),
        )
    except StatusUnavailableError as exc:
        if idempotency_key is not None:  # the client asked for the guarantee: say we cannot
            raise ServiceUnavailable(
                "the status store is unavailable, so the Idempotency-Key cannot be checked"
            ) from exc
        # A client message_id alone: published as before (handlers may still dedupe by it).
        _log.warning("idempotency.skipped", message_id=envelope.message_id, error=str(exc))
    await _publish_traced(envelope, body, due, ingest)
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
        **_AUTH,
        **_UNAVAILABLE,
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
    body = _check(message, settings, ("body",))
    due = _due(message, ("body",))
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


@router.post(
    "/v1/messages/batch",
    status_code=status.HTTP_202_ACCEPTED,
    responses={413: {"model": Problem}, 415: {"model": Problem}, **_AUTH, **_UNAVAILABLE},
    summary="Publish up to `max_batch_size` messages concurrently; a result per item",
)
async def post_batch(batch: BatchIn, ingest: IngestDep) -> BatchOut:
    settings, publisher, key = ingest.settings, ingest.publisher, ingest.key
    if len(batch.messages) > settings.max_batch_size:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "messages"),
                    "msg": f"at most {settings.max_batch_size} messages per batch",
                    "input": len(batch.messages),
                }
            ]
        )
    # Validate everything first: a batch with a bad item publishes nothing.
    bodies = [
        _check(message, settings, ("body", "messages", index))
        for index, message in enumerate(batch.messages)
    ]
    dues = [
        _due(message, ("body", "messages", index)) for index, message in enumerate(batch.messages)
    ]
    if key is not None:
        for message in batch.messages:
            key.check_message(message.type, message.priority)
        key.spend(len(batch.messages))
    if not publisher.ready:
        raise ServiceUnavailable("RabbitMQ is not reachable right now")
    ingest.metrics.batch.observe(len(batch.messages))
    envelopes = [_envelope(message, settings) for message in batch.messages]
    outcomes = await asyncio.gather(
        *(
            _publish_traced(envelope, body, due, ingest)
            for envelope, body, due in zip(envelopes, bodies, dues, strict=True)
        ),
        return_exceptions=True,
    )
    results = []
    for index, (envelope, due, outcome) in enumerate(zip(envelopes, dues, outcomes, strict=True)):
        if isinstance(outcome, BaseException) and not isinstance(
            outcome, BrokerUnavailableError | PublishNotConfirmedError
        ):
            raise outcome
        results.append(
            BatchItemResult(
                index=index,
                status="failed" if outcome else "accepted",
                message_id=envelope.message_id,
                routing_key=envelope.routing_key,
                deliver_at=due,
                error=str(outcome) if outcome else None,
            )
        )
    failed = sum(1 for r in results if r.status == "failed")
    if failed == len(results):
        raise ServiceUnavailable(f"none of the {failed} messages was confirmed: {results[0].error}")
    _log.info("batch.accepted", accepted=len(results) - failed, failed=failed)
    return BatchOut(accepted=len(results) - failed, failed=failed, results=results)


@probes.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/readyz", summary="Broker reachable and topology declared", responses=_UNAVAILABLE)
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)
    if state.publisher.ready:
        return JSONResponse({"status": "ready", "broker": "connected", "topology": "declared"})
    return JSONResponse(
        {"status": "unavailable", "detail": "RabbitMQ is not reachable or topology not declared"},
        status_code=503,
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )
