"""The peers: Dramatiq, Celery and FastStream doing hopline's drain job with a no-op handler.

Each peer fills its own queue with its own client API (Dramatiq and Celery wrap the payload
in their own message format), then drains it in a process of its own, as deployed: the
same broker, vhost-fresh queue of the same type (quorum or classic), the same 1 KiB JSON
payload (`bench.messages.payload`), persistent, and the same prefetch.

- Dramatiq: `RabbitmqBroker`, an in-process `Worker` (8 threads, its default) with
  `queue_prefetch` = prefetch; the queue type is passed through `_build_queue_arguments`.
- Celery: `task_acks_late=True`, pyamqp transport, the solo pool (one process, like one
  hopline consumer) with `worker_prefetch_multiplier` = prefetch, so the prefetch matches.
- FastStream: `RabbitBroker`, a subscriber with `Channel(prefetch_count=prefetch)` and the
  default ack policy (ack after the handler returned).

The drain clock starts at the first handled message and stops when `count` were handled;
Dramatiq and Celery are synchronous, so their parties are too (see `bench.parties`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading
import time
from typing import Any

from bench.child import emit, rss_kib
from bench.messages import payload

__all__ = [
    "celery_drain",
    "celery_fill",
    "dramatiq_drain",
    "dramatiq_fill",
    "faststream_drain",
    "faststream_fill",
]

QUEUE = "bench-peer"
ACTOR = "bench_noop"


class _Counter:
    """Handled messages, from any thread; remembers when the first and the `count`th came."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._next = itertools.count(1)
        self.done = 0
        self.first: float | None = None
        self.last: float | None = None
        self.finished = threading.Event()
        self.seen: set[int] = set()

    def hit(self, body: dict[str, Any]) -> None:
        self.seen.add(body["i"])  # distinct payloads: a duplicate delivery would show
        done = next(self._next)  # atomic under the GIL
        if done == 1:
            self.first = time.perf_counter()
        self.done = max(self.done, done)
        if done == self.count:
            self.last = time.perf_counter()
            self.finished.set()

    def result(self, peak_kib: int) -> dict[str, Any]:
        assert self.first is not None and self.last is not None
        elapsed = self.last - self.first
        return {
            "count": self.count,
            "elapsed_s": elapsed,
            "rate": (self.count - 1) / elapsed if elapsed > 0 else 0.0,
            "rss_peak_kib": peak_kib,
            "distinct": len(self.seen),
        }


def _watch(counter: _Counter, timeout_s: float) -> int:
    """Report progress until `count` were handled (or the time is up); the peak RSS."""
    peak = rss_kib()
    deadline = time.monotonic() + timeout_s
    while not counter.finished.wait(0.25):
        emit("progress", done=counter.done)
        peak = max(peak, rss_kib())
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {counter.done} of {counter.count} handled")
    emit("progress", done=counter.done)
    return peak


def _fill_progress(index: int) -> None:
    if index % 1000 == 0:
        emit("progress", done=index)


def _queue_arguments(queue_type: str) -> dict[str, Any]:
    return {"x-queue-type": queue_type}


# -- Dramatiq ------------------------------------------------------------------------------


def _dramatiq(args: dict[str, Any], counter: _Counter | None) -> Any:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    queue_type = args["queue_type"]

    class Broker(RabbitmqBroker):  # type: ignore[misc]
        def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
            arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)
            return {**arguments, **_queue_arguments(queue_type)}

    broker = Broker(url=args["amqp_url"])
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name=QUEUE, actor_name=ACTOR, max_retries=0)
    def noop(body: dict[str, Any]) -> None:
        if counter is not None:
            counter.hit(body)

    return broker, noop


def dramatiq_fill(args: dict[str, Any]) -> dict[str, Any]:
    """`actor.send` for each message: Dramatiq's own envelope, delivery mode 2."""
    broker, noop = _dramatiq(args, None)
    count = args["count"]
    broker.declare_queue(QUEUE, ensure=True)
    emit("ready")
    started = time.perf_counter()
    for index in range(count):
        noop.send(payload(index))
        _fill_progress(index)
    elapsed = time.perf_counter() - started
    broker.close()
    return {"count": count, "elapsed_s": elapsed, "rate": count / elapsed}


def dramatiq_drain(args: dict[str, Any]) -> dict[str, Any]:
    from dramatiq import Worker

    counter = _Counter(args["count"])
    broker, _ = _dramatiq(args, counter)
    worker = Worker(broker, worker_threads=args.get("threads", 8))
    worker.queue_prefetch = args["prefetch"]
    worker.start()
    emit("ready")
    try:
        peak = _watch(counter, args["timeout_s"])
    finally:
        worker.stop()
        broker.close()
    return counter.result(peak)


# -- Celery ------------------------------------------------------------------------------


def _celery(args: dict[str, Any], counter: _Counter | None) -> Any:
    from celery import Celery
    from kombu import Queue

    url = args["amqp_url"].replace("amqp://", "pyamqp://", 1)
    app = Celery("bench", broker=url, set_as_current=True)
    app.conf.update(
        task_default_queue=QUEUE,
        task_queues=[
            Queue(QUEUE, routing_key=QUEUE, queue_arguments=_queue_arguments(args["queue_type"]))
        ],
        task_acks_late=True,
        task_ignore_result=True,
        task_serializer="json",
        task_default_delivery_mode="persistent",
        worker_prefetch_multiplier=args.get("prefetch", 64),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # stdout carries the harness protocol
        broker_connection_retry_on_startup=True,
    )

    @app.task(name=ACTOR)  # type: ignore[untyped-decorator]
    def noop(body: dict[str, Any]) -> None:
        if counter is not None:
            counter.hit(body)

    return app, noop


def celery_fill(args: dict[str, Any]) -> dict[str, Any]:
    """`task.apply_async` on one pooled producer: Celery's protocol 2 message, persistent."""
    app, noop = _celery(args, None)
    count = args["count"]
    with app.connection_for_write() as connection:
        # Declares the queue with its type, as the worker would.
        app.amqp.queues[QUEUE].bind(connection.default_channel).declare()
    emit("ready")
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for index in range(count):
            noop.apply_async((payload(index),), producer=producer)
            _fill_progress(index)
    elapsed = time.perf_counter() - started
    return {"count": count, "elapsed_s": elapsed, "rate": count / elapsed}


def celery_drain(args: dict[str, Any]) -> dict[str, Any]:
    """The worker owns the main thread; a watcher thread reports and ends the process.

    A solo worker has no clean stop from another thread (SIGTERM's warm shutdown did not
    finish within 10 s here), so the watcher waits 1 s for the last acks and exits. A few
    messages (5-15 of 20 000) are then still queued although every payload was handled
    once (`distinct`): Celery had not sent their acks yet. Not counted against its rate.
    """
    counter = _Counter(args["count"])
    app, _ = _celery(args, counter)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def watch() -> None:
        try:
            emit("ready")
            peak = _watch(counter, args["timeout_s"])
            time.sleep(1.0)  # the last acks leave after the task returned
            emit("result", **counter.result(peak))
            code = 0
        except BaseException as error:  # the harness reads the log on a non-zero exit
            print(f"celery drain failed: {error!r}", file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=watch, daemon=True).start()
    worker = app.Worker(
        pool="solo",
        concurrency=1,
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
        hostname=f"bench-{os.getpid()}@localhost",
    )
    worker.start()
    raise RuntimeError("the Celery worker stopped before the drain finished")


# -- FastStream ------------------------------------------------------------------------------


def _faststream(args: dict[str, Any]) -> Any:
    from faststream.rabbit import RabbitBroker, RabbitQueue

    # As deployed: FastStream's own INFO lines (received / processed per message), written
    # to stderr (the party's log file) like hopline's, not to stdout (the protocol).
    # `quiet`: WARNING, no line per message (like HOPLINE_LOG_LEVEL=warning).
    logger = logging.getLogger("bench.faststream")
    logger.setLevel(logging.WARNING if args.get("quiet") else logging.INFO)
    logger.addHandler(logging.StreamHandler(sys.stderr))
    broker = RabbitBroker(args["amqp_url"], logger=logger)
    queue = RabbitQueue(QUEUE, durable=True, arguments=_queue_arguments(args["queue_type"]))
    return broker, queue


async def faststream_fill(args: dict[str, Any]) -> dict[str, Any]:
    """`broker.publish(persist=True)`, confirmed, `window` in flight like the raw reference."""
    broker, queue = _faststream(args)
    count, window = args["count"], args.get("window", 1000)
    async with broker:
        await broker.start()
        await broker.declare_queue(queue)
        emit("ready")
        started = time.perf_counter()
        sent = 0
        while sent < count:
            chunk = min(window, count - sent)
            await asyncio.gather(
                *(
                    broker.publish(payload(sent + i), queue=QUEUE, persist=True)
                    for i in range(chunk)
                )
            )
            sent += chunk
            emit("progress", done=sent)
        elapsed = time.perf_counter() - started
    return {"count": count, "elapsed_s": elapsed, "rate": count / elapsed}


async def faststream_drain(args: dict[str, Any]) -> dict[str, Any]:
    from faststream.rabbit import Channel

    counter = _Counter(args["count"])
    broker, queue = _faststream(args)

    @broker.subscriber(queue, channel=Channel(prefetch_count=args["prefetch"]))  # type: ignore[untyped-decorator]
    async def noop(body: dict[str, Any]) -> None:
        counter.hit(body)

    async with broker:
        await broker.start()
        emit("ready")
        peak = await asyncio.to_thread(_watch, counter, args["timeout_s"])
    return counter.result(peak)
