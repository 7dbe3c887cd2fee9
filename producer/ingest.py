"""What the ingestion routes share: the request's context (`IngestDep`), the checks of one
message, its envelope, the traced publish, and what to do when keys cannot be checked.

producer.api serves one message, producer.batch_api a batch; both build on this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common import headers as h
from common.delays import DelayError, delay_routing_key, seconds_until
from common.envelope import Envelope, encode_payload, new_envelope, to_message
from common.errors import StatusUnavailableError
from common.logging import get_logger
from common.tracing import TRACE_HEADERS, publish_span
from producer.auth import ApiKey
from producer.gate import AUTHENTICATED_KEY
from producer.idempotency import Idempotent
from producer.metrics import ProducerMetrics
from producer.publisher import Publisher
from producer.schemas import MessageIn, Problem
from producer.settings import ProducerSettings
from producer.state import app_state
from producer.status import ProducerStatus

__all__ = [
    "AUTH_RESPONSES",
    "REPLAYED_HEADER",
    "UNAVAILABLE_RESPONSES",
    "Ingest",
    "IngestDep",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "checked_body",
    "due_time",
    "envelope_for",
    "idempotency_header",
    "key_scope",
    "keys_unchecked",
    "publish_traced",
]

_log = get_logger("hopline.producer")


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

AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No API key, or an unknown one."},
    403: {"model": Problem, "description": "The key may not publish this type or priority."},
    429: {"model": Problem, "description": "The key is over its rate; retry after `Retry-After`."},
}
UNAVAILABLE_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {
        "model": Problem,
        "description": "Broker unreachable or publish not confirmed; "
        "retry after `Retry-After` seconds.",
    }
}


def checked_body(
    message: MessageIn, settings: ProducerSettings, loc: tuple[str | int, ...]
) -> bytes:
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


def due_time(message: MessageIn, loc: tuple[str | int, ...]) -> datetime | None:
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


def envelope_for(message: MessageIn, settings: ProducerSettings) -> Envelope:
    return new_envelope(
        message.type,
        message.payload,
        message.priority,
        app_id=settings.app_id,
        correlation_id=message.correlation_id,
        headers=message.headers,
        message_id=message.message_id,
    )


async def publish_traced(
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


def idempotency_header(description: str) -> Any:
    """The `Idempotency-Key` header, described for its route."""
    # Printable ASCII, like a message_id: it is stored and compared as text.
    return Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[ -~]+$",
        description=description,
    )


REPLAYED_HEADER = "Idempotent-Replayed"


def key_scope(ingest: Ingest) -> str:
    """Whose keys these are: the API key's name ("" when the API is open)."""
    return ingest.key.spec.name if ingest.key is not None else ""


def keys_unchecked(
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
