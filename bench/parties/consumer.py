"""hopline's consumer runtime (`consumer.worker.Worker`) in a process of its own.

Modes:
- `drain`: a no-op handler; done when `count` messages were handled and acked.
- `latency`: a no-op handler that records now - `sent_at` of each payload (HTTP → handler).
- `finish`: a no-op handler that notes when it returned for each payload index (the status
  scenario compares that with when the status store first said `succeeded`).
- `priority`: while the worker drains whatever is queued, this process publishes a trickle of
  high-priority probes and records their latency to handler start.
- `failure`: 10 % of messages fail once, 1 % always fail (quarantined after `max_attempts`).
- `limits`: publishes `mixed` no-op messages interleaved one to one with as many of a type
  limited to `concurrency=2` whose handler takes 50 ms (saturated throughout), then times
  how long the worker takes to handle `count` unlimited ones. With `semaphore`, the limit is
  an `asyncio.Semaphore(2)` inside the handler instead (what services did before `limits`).
- `share`: a no-op handler in one of several consumer processes draining the same queue
  (scale-out); done when `count` were handled here or nothing came for `idle_s`. Reports the
  wall-clock times of its first and last message so the harness can add processes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import aio_pika

from bench.child import emit, progress_while, rss_kib
from bench.messages import MESSAGE_TYPE, SERVICE, amqp_message, consumer_settings, key
from common.logging import configure_logging
from consumer.errors import RetryableError
from consumer.registry import Registry
from consumer.worker import Worker

__all__ = ["run"]

_PROBE_TYPE = "bench.probe"


def _trace_everything() -> None:
    """A tracer provider that records every span and exports it nowhere: tracing's own cost."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class _Nowhere(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_Nowhere()))
    trace.set_tracer_provider(provider)


async def run(args: dict[str, Any]) -> dict[str, Any]:
    mode: str = args["mode"]
    count: int = args["count"]
    # Without `concurrency`/`prefetch` the worker runs with hopline's defaults.
    sizes = {name: args[name] for name in ("concurrency", "prefetch") if args.get(name)}
    settings = consumer_settings(
        args["amqp_url"],
        args["queue_type"],
        log_level=args.get("log_level", "info"),
        events_enabled=args.get("events", True),  # lifecycle events, as deployed
        **sizes,
    )
    # As deployed: the default level (info), JSON lines on stderr (the party's log file).
    configure_logging(settings.log_level, settings.log_format)
    if args.get("tracing"):
        _trace_everything()
    registry = Registry(SERVICE)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    handled = 0
    latencies: list[float] = []
    calls: Counter[int] = Counter()
    quarantined = 0
    max_attempts = 3

    def one_done() -> None:
        nonlocal handled
        handled += 1
        if handled >= count and not finished.done():
            finished.set_result(None)

    first_at: float | None = None
    last_at = 0.0

    if mode in ("drain", "priority"):

        @registry.handler(MESSAGE_TYPE)
        async def noop(payload: Any) -> None:
            if mode == "drain":
                one_done()

    if mode == "share":

        @registry.handler(MESSAGE_TYPE)
        async def shared(payload: Any) -> None:
            nonlocal first_at, last_at
            last_at = time.time()
            if first_at is None:
                first_at = last_at
            one_done()

        async def idle_watch(idle_s: float) -> None:
            while not finished.done():
                await asyncio.sleep(0.05)
                if first_at is not None and time.time() - last_at > idle_s:
                    finished.set_result(None)

    if mode == "priority":

        @registry.handler(_PROBE_TYPE)
        async def probe(payload: Any) -> None:
            latencies.append(time.time() - payload["sent_at"])
            one_done()

    finished_at: list[float | None] = [None] * count if mode == "finish" else []
    if mode == "finish":

        @registry.handler(MESSAGE_TYPE)
        async def noted(payload: Any) -> None:
            finished_at[payload["i"]] = time.time()
            one_done()

    if mode == "latency":

        @registry.handler(MESSAGE_TYPE)
        async def timed(payload: Any) -> None:
            latencies.append(time.time() - payload["sent_at"])
            one_done()

    limited_runs = 0
    if mode == "limits":

        @registry.handler(MESSAGE_TYPE)
        async def unlimited(payload: Any) -> None:
            one_done()

        semaphore = asyncio.Semaphore(2) if args.get("semaphore") else None

        @registry.handler(_PROBE_TYPE, concurrency=None if semaphore else 2)
        async def limited(payload: Any) -> None:
            nonlocal limited_runs
            async with semaphore or contextlib.nullcontext():
                limited_runs += 1
                await asyncio.sleep(0.05)

        await _publish_mixed(args, args["mixed"])

    if mode == "failure":

        @registry.handler(MESSAGE_TYPE, max_attempts=max_attempts, retry=(0,))
        async def flaky(payload: Any) -> None:
            nonlocal quarantined
            index = payload["i"]
            calls[index] += 1
            if index % 100 == 0:
                if calls[index] >= max_attempts:
                    quarantined += 1
                    one_done()
                raise RetryableError("always fails")
            if index % 10 == 5 and calls[index] == 1:
                raise RetryableError("fails once")
            one_done()

    peak = [rss_kib()]
    worker = Worker(settings, registry, consumer_name="bench")
    await worker.start()
    rss_ready = rss_kib()
    emit("ready")
    reporter = asyncio.create_task(progress_while(lambda: handled, peak))
    started = time.perf_counter()
    prober = (
        asyncio.create_task(_probe(args, count, args.get("probe_rate", 50.0)))
        if mode == "priority"
        else asyncio.create_task(idle_watch(args.get("idle_s", 1.0)))
        if mode == "share"
        else None
    )
    try:
        await finished
        elapsed = time.perf_counter() - started
        backlog_left = await _backlog(worker, settings) if mode == "priority" else None
    finally:
        reporter.cancel()
        if prober is not None:
            prober.cancel()
        await worker.stop(grace_s=10)
    result: dict[str, Any] = {
        "count": handled,
        "elapsed_s": elapsed,
        "rate": handled / elapsed,
        "rss_ready_kib": rss_ready,
        "rss_peak_kib": peak[0],
    }
    if latencies:
        result["latencies_s"] = latencies
    if finished_at:
        result["finished_at"] = finished_at
    if mode == "limits":
        result["limited_runs"] = limited_runs
        result["deferrals"] = _deferrals(worker)
    if mode == "failure":
        result["quarantined"] = quarantined
        result["handler_calls"] = sum(calls.values())
    if mode == "share":
        result["first_at"] = first_at
        result["last_at"] = last_at
    if backlog_left is not None:
        result["backlog_left"] = backlog_left
    return result


async def _probe(args: dict[str, Any], count: int, rate: float) -> None:
    """Publish `count` high-priority probes at `rate` per second, confirmed one by one."""
    connection = await aio_pika.connect(args["amqp_url"])
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(args["exchange"], ensure=False)
        start = time.perf_counter()
        for index in range(count):
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            message = amqp_message(index)
            message.type = _PROBE_TYPE
            await exchange.publish(message, key("high").replace(MESSAGE_TYPE, _PROBE_TYPE))
    finally:
        await connection.close()


async def _publish_mixed(args: dict[str, Any], count: int) -> None:
    """`count` unlimited and `count` limited messages, alternating, confirmed in windows."""
    connection = await aio_pika.connect(args["amqp_url"])
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(args["exchange"], ensure=False)
        limited_key = key().replace(MESSAGE_TYPE, _PROBE_TYPE)
        window = []
        for index in range(count):
            probe = amqp_message(index)
            probe.type = _PROBE_TYPE
            window.append(exchange.publish(probe, limited_key))
            window.append(exchange.publish(amqp_message(index), key()))
            if len(window) >= 1000:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    finally:
        await connection.close()


def _deferrals(worker: Worker) -> int:
    """Confirmed deferral copies (the settle histogram's count for kind `defer`)."""
    for family in worker.metrics.settle.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("kind") == "defer":
                return int(sample.value)
    return 0


async def _backlog(worker: Worker, settings: Any) -> int:
    """Messages still ready in the low-priority queue (proof the backlog was there)."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.names.work_queue(SERVICE, "low"), passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()
