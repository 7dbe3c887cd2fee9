"""`GET /v1/messages/{id}` requests per second against a large status store.

    .venv/bin/python -m bench.status_lookup [--messages 1000000] [--seconds 10]
        [--store sqlite | --store postgresql://user@host/postgres]

Fills a fresh store (a SQLite file under /tmp, or a database of its own created next to the
given PostgreSQL URL and dropped afterwards) with `messages` messages, each accepted by the
producer and succeeded for one service, through the store's own `record` (what the recorder
writes). Then a real producer process (uvicorn, no recorder, no events) answers keep-alive
`GET`s of random known ids from 32 connections for `seconds`; the reference, measured in the
same run against the same process, is `GET /healthz` (the HTTP floor: routing and a JSON
answer, no store). The producer needs no broker for either: status reads do not touch it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from bench.http_wire import HttpConnection
from bench.producer_process import ProducerProcess, producer_process
from common.events import Event
from common.status.store import open_store
from deploy.local.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
_CONNECTIONS = 32
_BATCH = 5_000


def _events(index: int, at: datetime) -> tuple[Event, Event]:
    message_id = f"bench-{index:08d}"
    accepted = Event(
        "accepted", message_id, "producer", "bench.lookup", "normal.bench.lookup", 1, at
    )
    done = Event(
        "succeeded",
        message_id,
        "bench",
        "bench.lookup",
        "normal.bench.lookup",
        1,
        at,
        result={"n": index},
    )
    return accepted, done


async def fill(url: str, messages: int) -> float:
    """Record `messages` messages (two events each); returns the seconds it took."""
    store = open_store(url, retention_s=7 * 86_400)
    started = time.perf_counter()
    at = datetime.now(UTC) - timedelta(minutes=5)
    try:
        for first in range(0, messages, _BATCH):
            batch = [e for i in range(first, min(first + _BATCH, messages)) for e in _events(i, at)]
            await store.record(batch)
            print(
                f"\r  filled {min(first + _BATCH, messages):,} of {messages:,}", end="", flush=True
            )
    finally:
        await store.close()
    print()
    return time.perf_counter() - started


def producer(status_url: str, log: Path) -> AbstractAsyncContextManager[ProducerProcess]:
    """A producer that only reads statuses: no recorder, no events, and no broker (an
    address where none listens: status reads do not touch it)."""
    return producer_process(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        "quorum",
        log,
        ready_path="/healthz",
        HOPLINE_LOG_LEVEL="warning",
        HOPLINE_STATUS_URL=status_url,
        HOPLINE_STATUS_RECORDER="false",
        HOPLINE_EVENTS_ENABLED="false",
    )


async def load(port: int, paths: list[str], seconds: float) -> tuple[float, dict[int, int]]:
    """Requests per second of `GET`s of random `paths` from `_CONNECTIONS` connections."""
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    rng = random.Random(11)

    async def client() -> int:
        connection = await HttpConnection.open("127.0.0.1", port)
        done = 0
        try:
            while time.perf_counter() < deadline:
                status, _ = await connection.get(rng.choice(paths))
                statuses[status] = statuses.get(status, 0) + 1
                done += 1
        finally:
            await connection.close()
        return done

    started = time.perf_counter()
    total = sum(await asyncio.gather(*(client() for _ in range(_CONNECTIONS))))
    return total / (time.perf_counter() - started), statuses


async def run(store: str, messages: int, seconds: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hopline-bench-lookup-"))
    database = None
    if store == "sqlite":
        status_url = f"sqlite:///{workdir / 'status.sqlite3'}"
    else:
        database = f"hopline_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(store)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        status_url = store.rsplit("/", 1)[0] + f"/{database}"
    try:
        print(f"filling {store} with {messages:,} messages")
        fill_s = await fill(status_url, messages)
        ids = [f"/v1/messages/bench-{random.randrange(messages):08d}" for _ in range(10_000)]
        async with producer(status_url, workdir / "producer.log") as process:
            port = urlsplit(process.base_url).port or 80
            healthz, _ = await load(port, ["/healthz"], seconds)
            lookups, statuses = await load(port, ids, seconds)
        print(
            f"store {store.split('://')[0]}: {messages:,} messages filled in {fill_s:.0f} s "
            f"({2 * messages / fill_s:,.0f} events/s)\n"
            f"GET /v1/messages/{{id}}: {lookups:,.0f} req/s (statuses {statuses})\n"
            f"GET /healthz (reference): {healthz:,.0f} req/s\n"
            f"ratio: {lookups / healthz:.2f}x"
        )
    finally:
        if database is not None:
            admin = await asyncpg.connect(store)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.status_lookup", description=__doc__)
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args()
    asyncio.run(run(options.store, options.messages, options.seconds))


if __name__ == "__main__":
    main()
