"""An HTTP client process that loads the producer: closed loop or paced (open loop).

- `single`: `concurrency` clients each POST /v1/messages back to back for `duration_s` (or
  until `requests` were sent; `keep_latencies=false` for runs too long to report each);
  with `keyed`, each request carries an `Idempotency-Key` of its own (a first claim each).
- `batch`: `concurrency` clients POST /v1/messages/batch with `batch_size` items until
  `count` messages were accepted.
- `paced`: one POST /v1/messages every 1/`rate` seconds, `count` in all, whatever the
  answers take (the latency scenario: a request never waits for the previous one).
Every request's status is counted; only 202 counts as accepted. Each client is one kept-alive
connection (`bench.http_wire`, lighter than httpx so the client does not starve the server).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.child import emit, progress_while, rss_kib
from bench.http_wire import HttpConnection
from bench.messages import http_item

__all__ = ["run"]


async def run(args: dict[str, Any]) -> dict[str, Any]:
    mode: str = args["mode"]
    concurrency: int = args.get("concurrency", 1)
    address = urlsplit(args["base_url"])
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    accepted = 0
    peak = [rss_kib()]
    pool: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(await HttpConnection.open(address.hostname or "", address.port or 80))
    try:
        emit("ready")
        reporter = asyncio.create_task(progress_while(lambda: accepted, peak))
        started = time.perf_counter()

        async def post(path: str, body: bytes, items: int, header: str = "") -> None:
            nonlocal accepted
            begin = time.perf_counter()
            connection = await pool.get()
            try:
                status, _ = await connection.post(path, body, header)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                status = 0
                connection = await HttpConnection.open(address.hostname or "", address.port or 80)
            finally:
                pool.put_nowait(connection)
            latencies.append(time.perf_counter() - begin)
            statuses[status] += 1
            if status == 202:
                accepted += items

        if mode == "single":
            deadline = started + args["duration_s"]
            counter = iter(range(args.get("requests", 1 << 62)))

            # Unique across runs: the producer's status store outlives a bench run.
            run = uuid.uuid4().hex[:12]

            async def client_loop() -> None:
                for index in counter:
                    if time.perf_counter() >= deadline:
                        break
                    key = f"Idempotency-Key: {run}-{index}\r\n" if args.get("keyed") else ""
                    await post("/v1/messages", orjson.dumps(http_item(index)), 1, key)

            await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elif mode == "batch":
            size: int = args["batch_size"]
            batches = iter(range(args["count"] // size))

            async def batch_loop() -> None:
                for index in batches:
                    items = [http_item(index * size + i) for i in range(size)]
                    body = orjson.dumps({"messages": items})
                    await post("/v1/messages/batch", body, size)

            await asyncio.gather(*(batch_loop() for _ in range(concurrency)))
        else:  # paced
            rate: float = args["rate"]
            tasks = []
            for index in range(args["count"]):
                await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
                body = orjson.dumps(http_item(index))
                tasks.append(asyncio.create_task(post("/v1/messages", body, 1)))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        reporter.cancel()
    finally:
        while not pool.empty():
            await pool.get_nowait().close()
    return {
        "count": accepted,
        "elapsed_s": elapsed,
        "rate": accepted / elapsed,
        "requests": sum(statuses.values()),
        "statuses": {str(code): n for code, n in statuses.items()},
        "latencies_s": latencies if args.get("keep_latencies", True) else [],
    }
