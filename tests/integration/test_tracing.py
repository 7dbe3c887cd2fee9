"""One trace from the HTTP request to the last handler run, through a retry, on a real
broker (OpenTelemetry's in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from common.envelope import Envelope
from consumer import Registry, RetryableError
from tests.support.pipeline import (
    consumer_settings,
    producer_client,
    producer_settings,
    running_worker,
)
from tests.support.wait import wait_until


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A tracer provider recording into memory for this test only: the process-wide provider
    is put back to unset afterwards (as OpenTelemetry's own test utilities do), so no other
    test runs with tracing on."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


async def test_a_request_and_every_handler_run_share_one_trace(
    amqp_url: str, spans: InMemorySpanExporter
) -> None:
    runs: list[int] = []
    registry = Registry("traced")

    @registry.handler("jobs.flaky", max_attempts=3)
    async def flaky(payload: Any, envelope: Envelope) -> None:
        runs.append(envelope.attempt)
        if envelope.attempt == 1:
            raise RetryableError("not yet")

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with (
        running_worker(consumer_settings(amqp_url), registry),
        producer_client(producer_settings(amqp_url)) as client,
    ):
        # When a client in trace T posts a message whose handler fails once, then succeeds
        response = await client.post(
            "/v1/messages",
            json={"type": "jobs.flaky", "payload": {}},
            headers={"traceparent": traceparent},
        )
        assert response.status_code == 202, response.text
        await wait_until(lambda: runs == [1, 2], timeout_s=15, message="no retry")
        await wait_until(lambda: len(spans.get_finished_spans()) >= 3, timeout_s=5)
    finished = spans.get_finished_spans()
    # Then the request, the publish and both handler runs are spans of trace T, the runs
    # children of the publish (the retry copy carried the trace context with it)
    traced = [span for span in finished if span.kind is not SpanKind.INTERNAL]
    of_the_request = [span for span in traced if not span.name.startswith("GET /readyz")]
    assert {f"{span.context.trace_id:032x}" for span in of_the_request} == {trace_id}
    assert [span.kind for span in of_the_request].count(SpanKind.SERVER) == 1
    [publish] = [span for span in finished if span.kind is SpanKind.PRODUCER]
    processes = [span for span in finished if span.kind is SpanKind.CONSUMER]
    assert [span.attributes["hopline.attempt"] for span in processes] == [1, 2]
    assert all(span.parent.span_id == publish.context.span_id for span in processes)
    assert publish.attributes["messaging.destination.name"] == "hopline.ingress"
