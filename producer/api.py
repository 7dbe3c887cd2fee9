"""Routes: turn a request into an envelope, publish it, map known errors to status codes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common import headers as h
from common.delays import DelayError, delay_routing_key, seconds_until
from common.envelope import Envelope, encode_payload, new_envelope, to_message
from common.errors import BrokerUnavailableError, PublishNotConfirmedError, StatusUnavailableError
from common.logging import get_logger
from common.status.store import Claim, ClaimRequest
from common.tracing import TRACE_HEADERS, publish_span
from producer.auth import ApiKey
from producer.batch_keys import ItemKey, item_keys, lock_keys, refusal, repeated_keys
from producer.gate import AUTHENTICATED_KEY
from producer.idempotency import (
    BatchKeysTaken,
    Idempotent,
    Outcomes,
    request_fingerprint,
    scoped_key,
)
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


def _idempotency_header(description: str) -> Any:
    # Printable ASCII, like a message_id: it is stored and compared as text.
    return Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[ -~]+$",
        description=description,
    )


IdempotencyKey = Annotated[
    str | None,
    _idempotency_header(
        "Send the same request again with the same key (within the status retention): the "
        "first answer comes back with 200 and `Idempotent-Replayed: true`, and nothing is "
        "published twice. A client `message_id` works the same way."
    ),
]
BatchIdempotencyKey = Annotated[
    str | None,
    _idempotency_header(
        "Send the same batch again with the same key (within the status retention): items "
        "accepted before answer with their first `message_id` and `replayed: true` and are "
        "not published again; items that failed are published now. Every item a replay: 200 "
        "with `Idempotent-Replayed: true`. Without the header, an item's own `message_id` is "
        "its key (shared with `POST /v1/messages`)."
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"


def _scope(ingest: Ingest) -> str:
    """Whose keys these are: the API key's name ("" when the API is open)."""
    return ingest.key.spec.name if ingest.key is not None else ""


def _keys_unchecked(
    idempotency_key: str | None, exc: StatusUnavailableError | None, **log_context: object
) -> None:
    """Keys cannot be checked (no store, or `exc`: it is away). An Idempotency-Key asked for
    the guarantee: 503. Client message_ids alone: published as before (handlers may still
    dedupe by them)."""
    if idempotency_key is not None:
        raise ServiceUnavailable(
            "the status store is unavailable, so the Idempotency-Key cannot be checked"
            if exc is not None
            else "this producer keeps no status store: it cannot honour an Idempotency-Key"
        ) from exc
    if exc is not None:
        _log.warning("idempotency.skipped", **log_context, error=str(exc))


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
    if given is not None and ingest.idempotent is not None:
        try:
            return await ingest.idempotent.publish_once(
                scoped_key(_scope(ingest), given),
                request_fingerprint(message),
                accepted,
                lambda: _publish_traced(envelope, body, due, ingest),
            )
        except StatusUnavailableError as exc:
            _keys_unchecked(idempotency_key, exc, message_id=envelope.message_id)
    elif given is not None:
        _keys_unchecked(idempotency_key, None)
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
    responses={
        200: {
            "model": BatchOut,
            "description": "Every item was accepted before, within the retention, with its "
            "key (`Idempotency-Key` + index, or message_id): the first answers again, each "
            "`replayed`, nothing published (`Idempotent-Replayed: true`).",
        },
        409: {
            "model": Problem,
            "description": "Some item's key is being published by another request (retry "
            "after `Retry-After`), or was used for a different request; `detail` names the "
            "items. Nothing of the batch was published.",
        },
        413: {"model": Problem},
        415: {"model": Problem},
        **_AUTH,
        **_UNAVAILABLE,
    },
    summary="Publish up to `max_batch_size` messages concurrently; a result per item",
)
async def post_batch(
    batch: BatchIn,
    ingest: IngestDep,
    response: Response,
    idempotency_key: BatchIdempotencyKey = None,
) -> BatchOut:
    settings, key = ingest.settings, ingest.key
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
    keys = item_keys(batch, idempotency_key, _scope(ingest))
    _refuse_repeated(keys)
    if key is not None:
        for message in batch.messages:
            key.check_message(message.type, message.priority)
        key.spend(len(batch.messages))
    ingest.metrics.batch.observe(len(batch.messages))
    envelopes = [_envelope(message, settings) for message in batch.messages]
    items = [_Item(*item) for item in zip(envelopes, bodies, dues, strict=True)]
    replays, outcomes = await _publish_batch(items, keys, ingest, idempotency_key)
    for outcome in outcomes.values():  # a bug, not the broker: its key is already released
        if outcome is not None and not isinstance(
            outcome, BrokerUnavailableError | PublishNotConfirmedError
        ):
            raise outcome
    results = _results(items, replays, outcomes)
    failed = sum(1 for r in results if r.status == "failed")
    if outcomes and failed == len(outcomes):
        first_error = next(r.error for r in results if r.error)
        raise ServiceUnavailable(f"none of the {failed} messages was confirmed: {first_error}")
    if not outcomes:  # every item a replay
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
    _log.info(
        "batch.accepted", accepted=len(results) - failed, failed=failed, replayed=len(replays)
    )
    return BatchOut(accepted=len(results) - failed, failed=failed, results=results)


@dataclass(frozen=True, slots=True)
class _Item:
    """One message of a batch, ready to publish."""

    envelope: Envelope
    body: bytes
    due: datetime | None


def _refuse_repeated(keys: Sequence[ItemKey]) -> None:
    """422 for a message_id twice in one batch: its second item could only wait for the
    first (in flight) or repeat it."""
    repeats = repeated_keys(keys)
    if repeats:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "messages", index, "message_id"),
                    "msg": f"message_id repeats item {first}'s: a batch carries each "
                    "message_id once",
                    "input": None,
                }
                for index, first in repeats.items()
            ]
        )


async def _publish_batch(
    items: Sequence[_Item],
    keys: Sequence[ItemKey],
    ingest: Ingest,
    idempotency_key: str | None,
) -> tuple[Mapping[int, Claim], Outcomes]:
    """The items accepted before (by index: the first answer), and how the publish of every
    other item went. Keyed items are claimed first (producer.idempotency)."""

    async def publish(replays: Mapping[int, Claim]) -> Outcomes:
        return await _publish_items(
            {index: item for index, item in enumerate(items) if index not in replays}, ingest
        )

    if keys and ingest.idempotent is not None:
        requests = {
            k.index: ClaimRequest(
                k.key,
                k.fingerprint,
                items[k.index].envelope.message_id,
                items[k.index].envelope.routing_key,
            )
            for k in keys
        }
        lock = lock_keys(idempotency_key, _scope(ingest), keys)
        try:
            return await ingest.idempotent.publish_batch_once(requests, lock, publish)
        except BatchKeysTaken as taken:
            by_header = idempotency_key is not None
            raise refusal(taken.mismatched, taken.in_flight, by_header=by_header) from taken
        except StatusUnavailableError as exc:
            _keys_unchecked(idempotency_key, exc, items=len(keys))
    elif keys:
        _keys_unchecked(idempotency_key, None)
    return {}, await publish({})


async def _publish_items(items: Mapping[int, _Item], ingest: Ingest) -> Outcomes:
    """Publish `items` concurrently; by index, None (confirmed) or the error."""
    if not items:
        return {}
    if not ingest.publisher.ready:
        raise ServiceUnavailable("RabbitMQ is not reachable right now")
    outcomes = await asyncio.gather(
        *(_publish_traced(item.envelope, item.body, item.due, ingest) for item in items.values()),
        return_exceptions=True,
    )
    return dict(zip(items, outcomes, strict=True))


def _results(
    items: Sequence[_Item], replays: Mapping[int, Claim], outcomes: Outcomes
) -> list[BatchItemResult]:
    results = []
    for index, item in enumerate(items):
        first = replays.get(index)
        outcome = outcomes.get(index)
        results.append(
            BatchItemResult(
                index=index,
                status="accepted" if outcome is None else "failed",
                message_id=item.envelope.message_id if first is None else first.message_id,
                routing_key=item.envelope.routing_key if first is None else first.routing_key,
                deliver_at=item.due,
                error=None if outcome is None else str(outcome),
                replayed=first is not None,
            )
        )
    return results


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
