"""The status side of the pipeline in processes of their own.

- `recorder`: hopline's status recorder writing lifecycle events to a store (SQLite file or
  PostgreSQL). With `poll`, it is also a client asking for the status of every message, as
  `GET /v1/messages/{id}` would in the producer that hosts the recorder by default: every
  20 ms one query for the oldest messages not seen `succeeded` yet (their ids are
  `numbered_id(n)`, as `raw_publish` with a `rate` sends them); it reports when each was
  first seen. Without `poll` it records until `count` events are written or none came for
  `idle_s`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.child import emit, progress_while, rss_kib
from bench.messages import SERVICE, numbered_id
from common.logging import configure_logging
from common.settings import HoplineSettings
from common.status.recorder import Recorder
from common.status.store import open_store

__all__ = ["recorder"]

_POLL_S = 0.02
_POLL_BATCH = 500


async def recorder(args: dict[str, Any]) -> dict[str, Any]:
    count: int = args["count"]
    settings = HoplineSettings(
        amqp_url=args["amqp_url"], queue_type=args["queue_type"], log_format="json"
    )
    configure_logging("warning", "json")
    store = open_store(args["store_url"], retention_s=3600)
    recording = Recorder(settings, store)
    await recording.start()
    peak = [rss_kib()]
    emit("ready")
    try:
        if args.get("poll"):
            seen_at = await _poll(store, count, args["timeout_s"], peak)
            return {"seen_at": seen_at, "recorded": recording.recorded}
        reporter = asyncio.create_task(progress_while(lambda: recording.recorded, peak))
        await _until_recorded(recording, count, args.get("idle_s", 3.0))
        reporter.cancel()
        return {"recorded": recording.recorded}
    finally:
        await recording.close()
        await store.close()


async def _until_recorded(recording: Recorder, count: int, idle_s: float) -> None:
    last, quiet_since = -1, time.monotonic()
    while recording.recorded < count:
        await asyncio.sleep(0.1)
        if recording.recorded != last:
            last, quiet_since = recording.recorded, time.monotonic()
        elif last > 0 and time.monotonic() - quiet_since > idle_s:
            return


async def _poll(store: Any, count: int, timeout_s: float, peak: list[int]) -> list[float | None]:
    ids = [numbered_id(n) for n in range(count)]
    seen_at: list[float | None] = [None] * count
    unseen = list(range(count))
    reporter = asyncio.create_task(progress_while(lambda: count - len(unseen), peak))
    deadline = time.monotonic() + timeout_s
    while unseen and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        asking = unseen[:_POLL_BATCH]
        found = await store.succeeded_among(SERVICE, [ids[n] for n in asking])
        now = time.time()
        for n in asking:
            if ids[n] in found:
                seen_at[n] = now
        unseen = [n for n in unseen if seen_at[n] is None]
    reporter.cancel()
    return seen_at
