"""How long after a handler finishes the status store says `succeeded`, at a steady rate.

    .venv/bin/python -m bench.status_latency [--rate 1000] [--seconds 15] [--store sqlite]

On a private node: a consumer (lifecycle events on) handles messages published at `rate`
per second; a status recorder writes the events to the store (a SQLite file, or with
`--store postgresql://...` that database); a poller reads the store every 20 ms, as
`GET /v1/messages/{id}` would, and notes when each message first reads `succeeded`. The
latency is that moment minus the handler's return. Everything runs in one process (the
poller's resolution is 20 ms); the achieved publish rate is printed next to the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
from pydantic import SecretStr

from common.envelope import Envelope, new_envelope, to_message
from common.logging import configure_logging
from common.status.recorder import Recorder
from common.status.states import format_at
from common.status.store import SqlStatusStore, open_store
from consumer.registry import Registry
from consumer.settings import ConsumerSettings
from consumer.worker import Worker
from deploy.local.broker import start_local_broker, stop_local_broker

_POLL_S = 0.02


async def _measure(url: str, store_url: str, rate: float, seconds: float) -> None:
    settings = ConsumerSettings(amqp_url=SecretStr(url), log_level="warning", log_format="json")
    configure_logging(settings.log_level, settings.log_format)
    finished: dict[str, float] = {}
    registry = Registry("bench")

    @registry.handler("bench.work")
    async def work(_payload: Any, envelope: Envelope) -> None:
        finished[envelope.message_id] = time.time()

    store = open_store(store_url, retention_s=3600)
    recorder = Recorder(settings, store)
    seen: dict[str, float] = {}
    expected = [0]  # set once everything is published
    all_seen = asyncio.Event()
    async with Worker(settings, registry, consumer_name="bench"):
        await recorder.start()
        poller = asyncio.create_task(_poll(store, finished, seen, expected, all_seen))
        sent, elapsed = await _publish(url, rate, seconds)
        expected[0] = sent
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), timeout=30)
        poller.cancel()
        await recorder.close()
    await store.close()
    latencies = sorted(seen[i] - finished[i] for i in seen if i in finished)
    cut = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(f"store                           {store_url.split(':', 1)[0]}")
    print(f"published                       {sent} at {sent / elapsed:.0f}/s (target {rate:g}/s)")
    print(f"read succeeded                  {len(seen)} of {sent}")
    print(f"handler finish -> succeeded p50 {cut[49] * 1000:7.1f} ms")
    print(f"handler finish -> succeeded p99 {cut[98] * 1000:7.1f} ms (poll every 20 ms)")


async def _publish(url: str, rate: float, seconds: float) -> tuple[int, float]:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("hopline.ingress", ensure=False)
        count = int(rate * seconds)
        started = time.monotonic()
        pending = []
        for n in range(count):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            envelope = new_envelope("bench.work", {"n": n}, "normal", app_id="bench")
            pending.append(
                asyncio.ensure_future(exchange.publish(to_message(envelope), envelope.routing_key))
            )
        await asyncio.gather(*pending)
        return count, time.monotonic() - started
    finally:
        await connection.close()


async def _poll(
    store: SqlStatusStore,
    finished: dict[str, float],
    seen: dict[str, float],
    expected: list[int],
    all_seen: asyncio.Event,
) -> None:
    """What a client polling GET would see, for every message at once."""
    db = await store._ready()  # the table itself: one query for all, not one GET each
    while True:
        since = format_at(datetime.now(UTC) - timedelta(seconds=10))
        rows = await db.fetch(
            "SELECT message_id FROM hopline_services WHERE state = 'succeeded' AND at >= ?1",
            (since,),
        )
        now = time.time()
        for (message_id,) in rows:
            if message_id not in seen and message_id in finished:
                seen[message_id] = now
        if expected[0] and len(seen) >= expected[0]:
            all_seen.set()
        await asyncio.sleep(_POLL_S)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hopline-bench-status-"))
    broker = start_local_broker(base)
    store_url = f"sqlite:///{base / 'status.sqlite3'}" if args.store == "sqlite" else args.store
    try:
        asyncio.run(_measure(broker.amqp_url, store_url, args.rate, args.seconds))
    finally:
        stop_local_broker(broker)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
