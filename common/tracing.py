"""W3C trace context through the broker, with OpenTelemetry when it is installed.

With the `otel` extra (`pip install 'hopline[otel]'`) and a tracer provider (set up from the
standard `OTEL_*` variables by `configure_tracing`, or by the application), the producer opens
a PRODUCER span per publish, continuing the HTTP request's `traceparent`, and writes its
context into the message's `traceparent`/`tracestate` headers; the consumer opens a CONSUMER
span per handler run, as its child. Retry, quarantine and replay copies keep those headers, so
every run of a message lands in the trace of its request. Without the extra, or without a
provider, nothing here does any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

try:  # the optional `otel` extra
    from opentelemetry import propagate, trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    trace = None  # type: ignore[assignment]

__all__ = [
    "configure_tracing",
    "current_trace_ids",
    "process_span",
    "publish_span",
    "tracing_enabled",
]

TRACE_HEADERS = ("traceparent", "tracestate")
_TRACER = "hopline"


def tracing_enabled() -> bool:
    """OpenTelemetry is installed and a real tracer provider is set."""
    return trace is not None and not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def configure_tracing(service_name: str) -> bool:
    """Export spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces one) is set
    and the extra is installed; True if tracing is on."""
    wanted = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if trace is None or not wanted or tracing_enabled():
        return tracing_enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


@contextmanager
def publish_span(
    exchange: str, routing_key: str, incoming: Mapping[str, str]
) -> Iterator[Callable[[MutableMapping[str, Any]], None]]:
    """A PRODUCER span continuing `incoming` (an HTTP request's trace headers); yields a
    function that writes the span's context into a message's headers."""
    if not tracing_enabled():
        yield _no_injection
        return
    parent = propagate.extract(dict(incoming))
    tracer = trace.get_tracer(_TRACER)
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    with tracer.start_as_current_span(
        f"send {exchange}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    ):
        yield _inject


@contextmanager
def process_span(
    queue: str, headers: Mapping[str, Any], message_id: str | None, attempt: int
) -> Iterator[None]:
    """A CONSUMER span for one handler run, child of the context in the message headers."""
    if not tracing_enabled():
        yield
        return
    carrier = {name: _text(headers[name]) for name in TRACE_HEADERS if name in headers}
    tracer = trace.get_tracer(_TRACER)
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": message_id or "",
        "hopline.attempt": attempt,
    }
    with tracer.start_as_current_span(
        f"process {queue}",
        context=propagate.extract(carrier),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ):
        yield


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, for log lines; None without one."""
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _inject(headers: MutableMapping[str, Any]) -> None:
    propagate.inject(headers)


def _no_injection(_headers: MutableMapping[str, Any]) -> None:
    return None


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
